using Dapper;
using FluentValidation;
using LoyaltyApi.Infrastructure;
using Microsoft.AspNetCore.Http.HttpResults;

namespace LoyaltyApi.Features.Merchants;

public enum MerchantKind { Brand, Partner }

public sealed record CreateMerchantRequest(string Name, MerchantKind Kind);
public sealed record CreateStoreRequest(string Code, string Name);

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
        ORDER BY id
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
        WHERE merchant_id = @MerchantId
        ORDER BY id
        """;

    public static RouteGroupBuilder MapMerchants(this IEndpointRouteBuilder app)
    {
        var group = app.MapGroup("/v1/merchants").WithTags("Merchants");
        group.MapPost("", CreateMerchant).WithName("CreateMerchant")
            .WithSummary("Register the brand itself or a partner merchant.")
            .RequireAuthorization(Policies.Admin).Validate<CreateMerchantRequest>();
        group.MapGet("", ListMerchants).WithName("ListMerchants")
            .WithSummary("Merchants the caller may see (a pos key sees its own).")
            .RequireAuthorization(Policies.AnyApiClient);
        group.MapGet("{id:long}", GetMerchant).WithName("GetMerchant").WithSummary("One merchant.")
            .RequireAuthorization(Policies.AnyApiClient).ProducesProblem(404);
        group.MapPost("{id:long}/stores", CreateStore).WithName("CreateStore")
            .WithSummary("Add a store (POS location) to a merchant; codes are unique per merchant.")
            .RequireAuthorization(Policies.Admin).Validate<CreateStoreRequest>().ProducesProblem(404).ProducesProblem(409);
        group.MapGet("{id:long}/stores", ListStores).WithName("ListStores").WithSummary("A merchant's stores.")
            .RequireAuthorization(Policies.AnyApiClient).ProducesProblem(404);
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

    public static async Task<Ok<MerchantDto[]>> ListMerchants(HttpContext http, Db db, CancellationToken ct)
    {
        var caller = Caller.From(http.User);
        await using var connection = await db.OpenAsync(ct);
        var all = await connection.QueryAsync<MerchantDto>(new CommandDefinition(db.Sql(ListMerchantsSql), cancellationToken: ct));
        return TypedResults.Ok(all.Where(m => caller.MaySeeMerchant(m.Id)).ToArray());
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

    public static async Task<Results<Ok<StoreDto[]>, ProblemHttpResult>> ListStores(long id, HttpContext http, Db db, CancellationToken ct)
    {
        var caller = Caller.From(http.User);
        if (!caller.MaySeeMerchant(id)) return Problems.NotFound("Merchant", "id");
        await using var connection = await db.OpenAsync(ct);
        var merchant = await connection.QuerySingleOrDefaultAsync<MerchantDto>(new CommandDefinition(db.Sql(GetMerchantSql), new { Id = id }, cancellationToken: ct));
        if (merchant is null) return Problems.NotFound("Merchant", "id");
        var stores = await connection.QueryAsync<StoreDto>(new CommandDefinition(db.Sql(ListStoresSql), new { MerchantId = id }, cancellationToken: ct));
        return TypedResults.Ok(stores.ToArray());
    }
}
