// The floor of the benchmark: the service's HTTP requests and PostgreSQL round trips with none of its
// work. A quote and a card look-up are one statement on a multiplexed pool; a purchase is a transaction
// with a read batch and a write batch that commits (durably, as the service's do); a refund one write
// batch. No authentication, validation, rules or ledger. bench/run.sh drives it like the service, so
// the gap between the two is what the service's own work costs on the same machine in the same run.
using System.Text.Json;
using Npgsql;

var builder = WebApplication.CreateSlimBuilder(args);
builder.Logging.ClearProviders();
var app = builder.Build();
var cs = app.Configuration["Database:ConnectionString"] ?? throw new InvalidOperationException("Database:ConnectionString is required.");
var transactions = NpgsqlDataSource.Create(new NpgsqlConnectionStringBuilder(cs) { MaxAutoPrepare = 100, Multiplexing = false }.ToString());
var reads = NpgsqlDataSource.Create(new NpgsqlConnectionStringBuilder(cs) { MaxAutoPrepare = 100, Multiplexing = true, MaxPoolSize = 2 }.ToString());
await using (var create = transactions.CreateCommand("CREATE TABLE IF NOT EXISTS floor_writes (id bigserial PRIMARY KEY, body text NOT NULL)"))
{
    await create.ExecuteNonQueryAsync();
}

app.MapGet("/health", () => Results.Ok());
app.MapPost("/v1/purchases/quote", async (JsonElement body, CancellationToken ct) =>
{
    await using var read = reads.CreateCommand("SELECT $1::bigint");
    read.Parameters.AddWithValue(body.GetProperty("storeId").GetInt64());
    var store = (long)(await read.ExecuteScalarAsync(ct))!;
    return Results.Ok(new { storeId = store, pointsToEarn = 10L, balance = new { available = 100L, pending = 0L } });
});
app.MapPost("/v1/purchases", async (JsonElement body, CancellationToken ct) =>
{
    await using var connection = await transactions.OpenConnectionAsync(ct);
    await using var tx = await connection.BeginTransactionAsync(ct);
    await using (var batch = new NpgsqlBatch(connection, tx) { BatchCommands = { new("SELECT 1"), new("SELECT 2") } })
    await using (var reader = await batch.ExecuteReaderAsync(ct))
    {
        do { while (await reader.ReadAsync(ct)) { } } while (await reader.NextResultAsync(ct));
    }
    await using var writes = WriteAndCommit(connection, tx, "INSERT INTO floor_writes (body) VALUES ($1) RETURNING id", body);
    var id = (long)(await writes.ExecuteScalarAsync(ct))!;
    return Results.Created($"/v1/purchases/{id}", new { purchaseId = id, pointsEarned = 10L, balance = new { available = 100L, pending = 10L } });
});
app.MapGet("/v1/cards/{number}", async (string number, CancellationToken ct) =>
{
    await using var read = reads.CreateCommand("SELECT length($1)");
    read.Parameters.AddWithValue(number);
    var length = await read.ExecuteScalarAsync(ct);
    return Results.Ok(new { cardNumber = number, status = "active", balance = new { available = length, pending = 0L } });
});
app.MapPost("/v1/purchases/{id:long}/refunds", async (long id, JsonElement body, CancellationToken ct) =>
{
    await using var connection = await transactions.OpenConnectionAsync(ct);
    await using var tx = await connection.BeginTransactionAsync(ct);
    await using var writes = WriteAndCommit(connection, tx, "INSERT INTO floor_writes (body) VALUES ($1)", body);
    await writes.ExecuteNonQueryAsync(ct);
    return Results.Created($"/v1/purchases/{id}/refunds", new { purchaseId = id, pointsReversed = 1L });
});
app.Run();

// The write batch that ends a transaction, as the service's does: the write and COMMIT in one round trip.
static NpgsqlBatch WriteAndCommit(NpgsqlConnection connection, NpgsqlTransaction tx, string insertSql, JsonElement body) =>
    new(connection, tx) { BatchCommands = { new(insertSql) { Parameters = { new() { Value = body.GetRawText() } } }, new("COMMIT") } };
