using System.Buffers;
using System.Data.Common;
using System.Runtime.CompilerServices;
using System.Security.Cryptography;
using System.Text.Json;
using Dapper;
using Microsoft.AspNetCore.Http.Metadata;
using Microsoft.OpenApi;

namespace LoyaltyApi.Infrastructure;

/// <summary>
/// The <c>Idempotency-Key</c> contract: the same key with the same body replays the first
/// response; the same key with a different body is a 409. Records are written in the same
/// transaction as the work they describe, so a replay can never see half a write.
/// </summary>
public static class Idempotency
{
    public const string Header = "Idempotency-Key";
    public const string ReplayedHeader = "Idempotent-Replayed";

    /// <summary>
    /// The response a record stores for work that keeps its own (a purchase): none. A replay with the key
    /// carries the same body, finds the work by its business key and replays its response, so the record
    /// holds only the request's hash and the response JSON is not written twice.
    /// </summary>
    public const string NoStoredResponse = "";

    public sealed class Stored
    {
        public string Operation { get; set; } = "";
        public string RequestHash { get; set; } = "";
        public int StatusCode { get; set; }
        public string ResponseJson { get; set; } = "";
    }

    private const string FindSql = """
        SELECT operation, request_hash, status_code, response_json
        FROM idempotency_keys
        WHERE client_key = @ClientKey AND idem_key = @Key
        """;

    private const string InsertSql = """
        INSERT INTO idempotency_keys (client_key, idem_key, operation, request_hash, status_code, response_json, created_at)
        VALUES (@ClientKey, @Key, @Operation, @RequestHash, @StatusCode, @ResponseJson, @CreatedAt)
        """;

    public const int MaxKeyLength = 200;

    /// <summary>Documents the header on an operation that honours it, so clients and the bad-input suite find it in the OpenAPI document.</summary>
    public static RouteHandlerBuilder AcceptsIdempotencyKey(this RouteHandlerBuilder builder) =>
        builder.AddOpenApiOperationTransformer((operation, _, _) =>
        {
            operation.Parameters ??= [];
            operation.Parameters.Add(new OpenApiParameter
            {
                Name = Header,
                In = ParameterLocation.Header,
                Required = false,
                Description = $"Any 1 to {MaxKeyLength} visible ASCII characters, unique per request. A retry with the same key and body replays the " +
                              "first response (with Idempotent-Replayed: true); the same key with another body is a 409. Keys are kept per API client.",
                Schema = new OpenApiSchema { Type = JsonSchemaType.String, MinLength = 1, MaxLength = MaxKeyLength, Pattern = "^[!-~]+$" },
            });
            return Task.CompletedTask;
        });

    /// <summary>Reads and checks the header; a malformed key is a 400 naming the header.</summary>
    public static string? KeyFrom(HttpContext http)
    {
        if (!http.Request.Headers.TryGetValue(Header, out var values)) return null;
        var key = values.ToString();
        if (key.Length is 0 or > MaxKeyLength || key.Any(c => c < 0x21 || c > 0x7E))
        {
            throw new DomainRejection(400, "invalid_idempotency_key",
                $"Idempotency-Key must be 1 to {MaxKeyLength} visible ASCII characters.", Header);
        }
        return key;
    }

    // Per thread, reused: hashing runs on every write request, and a fresh hash context and buffers
    // per request cost more than the hashing.
    [ThreadStatic] private static ArrayBufferWriter<byte>? _hashInput;
    [ThreadStatic] private static Utf8JsonWriter? _hashWriter;

    /// <summary>SHA-256 of "operation\n" followed by the request as JSON (default options), in hex.</summary>
    public static string HashOf<T>(string operation, T request)
    {
        var input = _hashInput ??= new ArrayBufferWriter<byte>(1024);
        input.ResetWrittenCount();
        var prefix = System.Text.Encoding.UTF8.GetByteCount(operation) + 1;
        var span = input.GetSpan(prefix);
        System.Text.Encoding.UTF8.GetBytes(operation, span);
        span[prefix - 1] = (byte)'\n';
        input.Advance(prefix);
        var writer = _hashWriter ??= new Utf8JsonWriter(input);
        writer.Reset(input);
        JsonSerializer.Serialize(writer, request);
        writer.Flush();
        Span<byte> digest = stackalloc byte[SHA256.HashSizeInBytes];
        SHA256.HashData(input.WrittenSpan, digest);
        // A basket of 500 long lines leaves a large buffer behind: neither it nor the writer holding it is kept.
        if (input.Capacity > 64 * 1024) (_hashInput, _hashWriter) = (null, null);
        return Convert.ToHexStringLower(digest);
    }

    /// <summary>The stored response when this key was used before for the same request; throws 409 when it was used for another.</summary>
    public static async Task<Stored?> FindAsync(Db db, DbConnection connection, DbTransaction tx, string clientKey, string? key,
        string operation, string requestHash, CancellationToken ct)
    {
        if (key is null) return null;
        var stored = await connection.QuerySingleOrDefaultAsync<Stored>(new CommandDefinition(db.Sql(FindSql),
            new { ClientKey = clientKey, Key = key }, tx, cancellationToken: ct));
        return Replayable(stored, key, operation, requestHash);
    }

    /// <summary>The stored response to replay, if any; throws 409 when the key was used for another request.</summary>
    public static Stored? Replayable(Stored? stored, string? key, string operation, string requestHash)
    {
        if (key is null || stored is null) return null;
        if (stored.Operation != operation || stored.RequestHash != requestHash)
        {
            throw new DomainRejection(409, "idempotency_key_reused",
                "This Idempotency-Key was already used with a different request.", Header);
        }
        return stored;
    }

    public static Task SaveAsync(Db db, DbConnection connection, DbTransaction tx, string clientKey, string? key,
        string operation, string requestHash, int statusCode, string responseJson, DateTime now, CancellationToken ct)
    {
        if (key is null) return Task.CompletedTask;
        return connection.ExecuteAsync(new CommandDefinition(db.Sql(InsertSql), new
        {
            ClientKey = clientKey,
            Key = key,
            Operation = operation,
            RequestHash = requestHash,
            StatusCode = statusCode,
            ResponseJson = responseJson,
            CreatedAt = now,
        }, tx, cancellationToken: ct));
    }

    /// <summary>Adds the lookup to a read batch; read it back with <see cref="ReadStoredAsync"/> and check it with <see cref="Replayable"/>.</summary>
    public static void AddFindTo(SqlBatch batch, string clientKey, string? key) =>
        batch.Add(FindSql, new { ClientKey = clientKey, Key = key ?? "" });

    public static async Task<Stored?> ReadStoredAsync(BatchResults grid) => await grid.ReadSingleOrDefaultAsync<Stored>();

    public static void AddSaveTo(SqlBatch batch, string clientKey, string? key, string operation, string requestHash,
        int statusCode, string responseJson, DateTime now)
    {
        if (key is null) return;
        batch.Add(InsertSql, new
        {
            ClientKey = clientKey, Key = key, Operation = operation, RequestHash = requestHash, StatusCode = statusCode,
            ResponseJson = responseJson, CreatedAt = now,
        });
    }

    public static void MarkReplayed(HttpContext http) => http.Response.Headers[ReplayedHeader] = "true";
}

public static class Json
{
    public static readonly JsonSerializerOptions Web = new(JsonSerializerDefaults.Web);
    public static string Serialize<T>(T value) => JsonSerializer.Serialize(value, Web);
    public static T Deserialize<T>(string json) => JsonSerializer.Deserialize<T>(json, Web)!;
}

/// <summary>Runs a transactional unit of work and retries it once when a unique index reports a concurrent twin.</summary>
public static class Transactions
{
    // Transactions a write batch already committed (SqlBatch.ExecuteAndCommitAsync): committing again would
    // fail. Npgsql reuses its transaction objects, so a mark is taken off as soon as the unit of work ends.
    private static readonly ConditionalWeakTable<DbTransaction, object> Committed = new();

    internal static void MarkCommitted(DbTransaction tx) => Committed.AddOrUpdate(tx, Committed);

    /// <summary>True once a write batch committed <paramref name="tx"/>: any later statement would run outside it.</summary>
    internal static bool IsCommitted(DbTransaction? tx) => tx is not null && Committed.TryGetValue(tx, out _);

    // A purchase's first attempt skips the look-ups, so it may spend one attempt more than other work.
    private const int MaxAttempts = 4;

    public static Task<T> RunAsync<T>(Db db, Func<DbConnection, DbTransaction, Task<T>> work, CancellationToken ct) =>
        RunAsync(db, (connection, tx, _) => work(connection, tx), ct);

    /// <summary>As above; <c>work</c> also gets the attempt, 1 first, so a retry after a unique violation can look before it writes.</summary>
    public static async Task<T> RunAsync<T>(Db db, Func<DbConnection, DbTransaction, int, Task<T>> work, CancellationToken ct)
    {
        for (var attempt = 1; ; attempt++)
        {
            await using var writer = await db.EnterWriterAsync(ct);
            await using var connection = await db.OpenForTransactionAsync(ct);
            await using var tx = await Db.BeginAsync(connection, ct);
            // A reused transaction object may carry a mark from work that ran outside RunAsync.
            Committed.Remove(tx);
            try
            {
                var result = await work(connection, tx, attempt);
                if (!Committed.Remove(tx)) await tx.CommitAsync(ct);
                return result;
            }
            catch (DbException e) when (attempt < MaxAttempts && db.Dialect.IsUniqueViolation(e))
            {
                // A concurrent request with the same business key won, or a first attempt that did not look
                // for an earlier one met it; the next attempt replays or rejects it.
                await tx.RollbackAsync(CancellationToken.None);
            }
            finally
            {
                Committed.Remove(tx);
            }
        }
    }
}

/// <summary>
/// A 201 whose body is JSON serialized once already: the text a purchase or refund keeps for replays is the
/// text the caller gets, byte for byte, and is not serialized a second time. Described in the OpenAPI
/// document as <typeparamref name="T"/>.
/// </summary>
public sealed class CreatedJson<T>(string location, string json) : IResult, IEndpointMetadataProvider, IStatusCodeHttpResult
{
    public int? StatusCode => StatusCodes.Status201Created;

    public Task ExecuteAsync(HttpContext httpContext)
    {
        var response = httpContext.Response;
        response.StatusCode = StatusCodes.Status201Created;
        response.Headers.Location = location;
        response.ContentType = "application/json; charset=utf-8";
        return response.WriteAsync(json, httpContext.RequestAborted);
    }

    public static void PopulateMetadata(System.Reflection.MethodInfo method, EndpointBuilder builder) =>
        builder.Metadata.Add(new ProducesResponseTypeMetadata(StatusCodes.Status201Created, typeof(T), ["application/json"]));
}
