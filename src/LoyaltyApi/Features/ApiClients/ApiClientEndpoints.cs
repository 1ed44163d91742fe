using Dapper;
using FluentValidation;
using LoyaltyApi.Infrastructure;
using Microsoft.AspNetCore.Http.HttpResults;

namespace LoyaltyApi.Features.ApiClients;

/// <param name="Name">Who holds the key, e.g. "Store 12 till 3".</param>
/// <param name="Role">admin, pos, finance or analyst.</param>
/// <param name="MerchantId">Required for pos keys: the merchant whose purchases the key may record and see.</param>
/// <param name="StoreId">Optional for pos keys: narrows the key to one store of that merchant.</param>
public sealed record CreateApiClientRequest(string Name, string Role, long? MerchantId = null, long? StoreId = null);

/// <summary>The key is shown here once; only its hash is stored.</summary>
public sealed record CreatedApiClient(long Id, string Name, string Role, long? MerchantId, long? StoreId, string ApiKey);

public sealed class ApiClientDto
{
    public long Id { get; set; }
    public string Name { get; set; } = "";
    public string Role { get; set; } = "";
    public long? MerchantId { get; set; }
    public long? StoreId { get; set; }
    public string KeyPrefix { get; set; } = "";
    public DateTime CreatedAt { get; set; }
    public DateTime? RevokedAt { get; set; }
}

/// <param name="NextCursor">Pass as cursor for the next page; null on the last page.</param>
public sealed record ApiClientPage(IReadOnlyList<ApiClientDto> Items, string? NextCursor);

public sealed class CreateApiClientValidator : AbstractValidator<CreateApiClientRequest>
{
    public CreateApiClientValidator()
    {
        // The name is written as the actor of every ledger entry the key makes (ledger_entries.actor is 100 long).
        RuleFor(x => x.Name).NotEmpty().MaximumLength(100);
        RuleFor(x => x.Role).Must(r => Roles.All.Contains(r)).WithMessage("Role must be one of admin, pos, finance, analyst.");
        RuleFor(x => x.MerchantId).NotNull().When(x => x.Role == Roles.Pos).WithMessage("A pos key needs a merchantId.");
        RuleFor(x => x.StoreId).Null().When(x => x.Role != Roles.Pos).WithMessage("Only pos keys can be scoped to a store.");
        RuleFor(x => x.MerchantId).GreaterThan(0).When(x => x.MerchantId is not null);
        RuleFor(x => x.StoreId).GreaterThan(0).When(x => x.StoreId is not null);
    }
}

public static class ApiClientEndpoints
{
    private const string StoreOfMerchantSql = """
        SELECT merchant_id
        FROM stores
        WHERE id = @StoreId
        """;

    private const string MerchantExistsSql = """
        SELECT COUNT(*)
        FROM merchants
        WHERE id = @MerchantId
        """;

    private const string InsertSql = """
        INSERT INTO api_clients (name, role, merchant_id, store_id, key_prefix, key_hash, created_at)
        VALUES (@Name, @Role, @MerchantId, @StoreId, @KeyPrefix, @KeyHash, @CreatedAt)
        RETURNING id
        """;

    private const string ListSql = """
        SELECT id, name, role, merchant_id, store_id, key_prefix, created_at, revoked_at
        FROM api_clients
        WHERE id > @After
        ORDER BY id
        LIMIT @Take
        """;

    private const string RevokeSql = """
        UPDATE api_clients
        SET revoked_at = @Now
        WHERE id = @Id AND revoked_at IS NULL
        """;

    public static RouteGroupBuilder MapApiClients(this IEndpointRouteBuilder app)
    {
        var group = app.MapGroup("/v1/api-clients").WithTags("API clients").RequireAuthorization(Policies.Admin);
        group.MapPost("", CreateApiClient).WithName("CreateApiClient")
            .WithSummary("Issue an API key. The key is returned once and stored only as a hash.")
            .Validate<CreateApiClientRequest>().ProducesProblem(422);
        group.MapGet("", ListApiClients).WithName("ListApiClients").WithSummary("API clients, without their keys, oldest first. Cursor paging; limit 1–100 (default 20).")
            .ProducesProblem(400);
        group.MapPost("{id:long}/revoke", RevokeApiClient).WithName("RevokeApiClient")
            .WithSummary("Revoke a key; caches forget it within 30 seconds.").ProducesProblem(404);
        return group;
    }

    public static async Task<Results<Created<CreatedApiClient>, ProblemHttpResult>> CreateApiClient(
        CreateApiClientRequest body, Db db, TimeProvider clock, CancellationToken ct)
    {
        await using var connection = await db.OpenAsync(ct);
        if (body.MerchantId is { } merchantId)
        {
            var exists = await connection.ExecuteScalarAsync<long>(new CommandDefinition(db.Sql(MerchantExistsSql), new { MerchantId = merchantId }, cancellationToken: ct));
            if (exists == 0) return Problems.Unprocessable("unknown_merchant", "No merchant has this id.", "merchantId");
        }
        if (body.StoreId is { } storeId)
        {
            var owner = await connection.ExecuteScalarAsync<long?>(new CommandDefinition(db.Sql(StoreOfMerchantSql), new { StoreId = storeId }, cancellationToken: ct));
            if (owner != body.MerchantId) return Problems.Unprocessable("unknown_store", "The store does not belong to this merchant.", "storeId");
        }
        var (key, prefix, hash) = ApiKeys.Generate();
        var id = await connection.ExecuteScalarAsync<long>(new CommandDefinition(db.Sql(InsertSql), new
        {
            body.Name, body.Role, body.MerchantId, body.StoreId, KeyPrefix = prefix, KeyHash = hash,
            CreatedAt = clock.GetUtcNow().UtcDateTime,
        }, cancellationToken: ct));
        return TypedResults.Created($"/v1/api-clients/{id}", new CreatedApiClient(id, body.Name, body.Role, body.MerchantId, body.StoreId, key));
    }

    public static async Task<Results<Ok<ApiClientPage>, ProblemHttpResult>> ListApiClients(string? cursor, int? limit, Db db, CancellationToken ct)
    {
        if (Paging.TryRead("ac", cursor, limit, out var after, out var take) is { } invalid) return invalid;
        await using var connection = await db.OpenAsync(ct);
        var rows = (await connection.QueryAsync<ApiClientDto>(new CommandDefinition(db.Sql(ListSql),
            new { After = after ?? 0, Take = take + 1 }, cancellationToken: ct))).ToList();
        return TypedResults.Ok(new ApiClientPage(rows, Paging.Cut(rows, take, "ac", c => c.Id)));
    }

    public static async Task<Results<NoContent, ProblemHttpResult>> RevokeApiClient(long id, Db db, ApiKeyCache cache, TimeProvider clock, CancellationToken ct)
    {
        await using var connection = await db.OpenAsync(ct);
        var n = await connection.ExecuteAsync(new CommandDefinition(db.Sql(RevokeSql), new { Id = id, Now = clock.GetUtcNow().UtcDateTime }, cancellationToken: ct));
        if (n == 0) return Problems.NotFound("Active API client", "id");
        cache.Clear();
        return TypedResults.NoContent();
    }
}
