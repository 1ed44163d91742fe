using Dapper;
using FluentValidation;
using LoyaltyApi.Infrastructure;
using Microsoft.AspNetCore.Http.HttpResults;

namespace LoyaltyApi.Features.Merchants;

public enum MerchantKind { Brand, Partner }

public sealed record CreateMerchantRequest(string Name, MerchantKind Kind);
public sealed record CreateStoreRequest(string Code, string Name);

/// <param name="NextCursor">Pass as cursor for the next page; null on the last page.</param>
public sealed record MerchantPage(IReadOnlyList<MerchantDto> Items, string? NextCursor);

/// <param name="NextCursor">Pass as cursor for the next page; null on the last page.</param>
public sealed record StorePage(IReadOnlyList<StoreDto> Items, string? NextCursor);

public sealed class MerchantDto
{
    public long Id { get; set; }
    public string Name { get; set; } = "";
    public string Kind { get; set; } = "";
    public DateTime CreatedAt { get; set; }
}

public sealed class StoreDto
{
    public long Id { get; set; }
    public long MerchantId { get; set; }
    public string Code { get; set; } = "";
    public string Name { get; set; } = "";
    public DateTime CreatedAt { get; set; }
}

public sealed class CreateMerchantValidator : AbstractValidator<CreateMerchantRequest>
{
    public CreateMerchantValidator()
    {
        RuleFor(x => x.Name).NotEmpty().MaximumLength(200);
        RuleFor(x => x.Kind).IsInEnum();
    }
}

public sealed class CreateStoreValidator : AbstractValidator<CreateStoreRequest>
{
    public CreateStoreValidator()
    {
        RuleFor(x => x.Code).NotEmpty().MaximumLength(64);
        RuleFor(x => x.Name).NotEmpty().MaximumLength(200);
    }
}

public static class MerchantEndpoints
{
    private const string InsertMerchantSql = """
        INSERT INTO merchants (name, kind, created_at)
        VALUES (@Name, @Kind, @CreatedAt)
        RETURNING id
        """;

    private const string ListMerchantsSql = """
        SELECT id, name, kind, created_at
        FROM merchants
        WHERE id > @After AND (@Only IS NULL OR id = @Only)
        ORDER BY id
        LIMIT @Take
        """;

    private const string GetMerchantSql = """
        SELECT id, name, kind, created_at
        FROM merchants
        WHERE id = @Id
        """;

    private const string InsertStoreSql = """
        INSERT INTO stores (merchant_id, code, name, created_at)
        VALUES (@MerchantId, @Code, @Name, @CreatedAt)
        RETURNING id
        """;

    private const string ListStoresSql = """
        SELECT id, merchant_id, code, name, created_at
        FROM stores
        WHERE merchant_id = @MerchantId AND id > @After
        ORDER BY id
        LIMIT @Take
        """;

    public static RouteGroupBuilder MapMerchants(this IEndpointRouteBuilder app)
    {
        var group = app.MapGroup("/v1/merchants").WithTags("Merchants");
        group.MapPost("", CreateMerchant).WithName("CreateMerchant")
            .WithSummary("Register the brand itself or a partner merchant.")
            .RequireAuthorization(Policies.Admin).Validate<CreateMerchantRequest>();
        group.MapGet("", ListMerchants).WithName("ListMerchants")
            .WithSummary("Merchants the caller may see (a pos key sees its own), oldest first. Cursor paging; limit 1–100 (default 20).")
            .RequireAuthorization(Policies.AnyApiClient).ProducesProblem(400);
        group.MapGet("{id:long}", GetMerchant).WithName("GetMerchant").WithSummary("One merchant.")
            .RequireAuthorization(Policies.AnyApiClient).ProducesProblem(404);
        group.MapPost("{id:long}/stores", CreateStore).WithName("CreateStore")
            .WithSummary("Add a store (POS location) to a merchant; codes are unique per merchant.")
            .RequireAuthorization(Policies.Admin).Validate<CreateStoreRequest>().ProducesProblem(404).ProducesProblem(409);
        group.MapGet("{id:long}/stores", ListStores).WithName("ListStores")
            .WithSummary("A merchant's stores, oldest first. Cursor paging; limit 1–100 (default 20).")
            .RequireAuthorization(Policies.AnyApiClient).ProducesProblem(400).ProducesProblem(404);
        return group;
    }

    public static async Task<Created<MerchantDto>> CreateMerchant(CreateMerchantRequest body, Db db, TimeProvider clock, CancellationToken ct)
    {
        var now = clock.GetUtcNow().UtcDateTime;
        await using var connection = await db.OpenAsync(ct);
        var id = await connection.ExecuteScalarAsync<long>(new CommandDefinition(db.Sql(InsertMerchantSql),
            new { body.Name, Kind = body.Kind.ToString().ToLowerInvariant(), CreatedAt = now }, cancellationToken: ct));
        var dto = new MerchantDto { Id = id, Name = body.Name, Kind = body.Kind.ToString().ToLowerInvariant(), CreatedAt = now };
        return TypedResults.Created($"/v1/merchants/{id}", dto);
    }

    public static async Task<Results<Ok<MerchantPage>, ProblemHttpResult>> ListMerchants(string? cursor, int? limit, HttpContext http, Db db, CancellationToken ct)
    {
        if (Paging.TryRead("mc", cursor, limit, out var after, out var take) is { } invalid) return invalid;
        var caller = Caller.From(http.User);
        await using var connection = await db.OpenAsync(ct);
        var rows = (await connection.QueryAsync<MerchantDto>(new CommandDefinition(db.Sql(ListMerchantsSql),
            new { After = after ?? 0, Only = caller.VisibleMerchant, Take = take + 1 }, cancellationToken: ct))).ToList();
        return TypedResults.Ok(new MerchantPage(rows, Paging.Cut(rows, take, "mc", m => m.Id)));
    }

    public static async Task<Results<Ok<MerchantDto>, ProblemHttpResult>> GetMerchant(long id, HttpContext http, Db db, CancellationToken ct)
    {
        var caller = Caller.From(http.User);
        await using var connection = await db.OpenAsync(ct);
        var merchant = await connection.QuerySingleOrDefaultAsync<MerchantDto>(new CommandDefinition(db.Sql(GetMerchantSql), new { Id = id }, cancellationToken: ct));
        // Another merchant's record is reported as missing, so ids cannot be probed.
        if (merchant is null || !caller.MaySeeMerchant(id)) return Problems.NotFound("Merchant", "id");
        return TypedResults.Ok(merchant);
    }

    public static async Task<Results<Created<StoreDto>, ProblemHttpResult>> CreateStore(long id, CreateStoreRequest body, Db db, TimeProvider clock, CancellationToken ct)
    {
        var now = clock.GetUtcNow().UtcDateTime;
        await using var connection = await db.OpenAsync(ct);
        var merchant = await connection.QuerySingleOrDefaultAsync<MerchantDto>(new CommandDefinition(db.Sql(GetMerchantSql), new { Id = id }, cancellationToken: ct));
        if (merchant is null) return Problems.NotFound("Merchant", "id");
        try
        {
            var storeId = await connection.ExecuteScalarAsync<long>(new CommandDefinition(db.Sql(InsertStoreSql),
                new { MerchantId = id, body.Code, body.Name, CreatedAt = now }, cancellationToken: ct));
            return TypedResults.Created($"/v1/merchants/{id}/stores/{storeId}",
                new StoreDto { Id = storeId, MerchantId = id, Code = body.Code, Name = body.Name, CreatedAt = now });
        }
        catch (System.Data.Common.DbException e) when (db.Dialect.IsUniqueViolation(e))
        {
            return Problems.Conflict("store_code_taken", "This merchant already has a store with that code.", "code");
        }
    }

    public static async Task<Results<Ok<StorePage>, ProblemHttpResult>> ListStores(long id, string? cursor, int? limit, HttpContext http, Db db, CancellationToken ct)
    {
        if (Paging.TryRead("st", cursor, limit, out var after, out var take) is { } invalid) return invalid;
        var caller = Caller.From(http.User);
        if (!caller.MaySeeMerchant(id)) return Problems.NotFound("Merchant", "id");
        await using var connection = await db.OpenAsync(ct);
        var merchant = await connection.QuerySingleOrDefaultAsync<MerchantDto>(new CommandDefinition(db.Sql(GetMerchantSql), new { Id = id }, cancellationToken: ct));
        if (merchant is null) return Problems.NotFound("Merchant", "id");
        var rows = (await connection.QueryAsync<StoreDto>(new CommandDefinition(db.Sql(ListStoresSql),
            new { MerchantId = id, After = after ?? 0, Take = take + 1 }, cancellationToken: ct))).ToList();
        return TypedResults.Ok(new StorePage(rows, Paging.Cut(rows, take, "st", s => s.Id)));
    }
}
