using System.Data.Common;
using Dapper;
using LoyaltyApi.Features.Purchases;
using LoyaltyApi.Infrastructure;
using LoyaltyApi.Tests.Infrastructure;
using Microsoft.Data.Sqlite;
using Npgsql;
using Xunit;

namespace LoyaltyApi.Tests.Schema;

/// <summary>
/// Migration 0007 moves each purchase's receipt lines from rows of their own into purchases.lines_json:
/// a database with lines written by the schema before it keeps every line, refunded part included, in the
/// form the service reads.
/// </summary>
public abstract class ReceiptLinesMigrationTests
{
    protected abstract DatabaseProvider Provider { get; }
    protected abstract Task<string> NewDatabaseAsync();
    protected abstract DbConnection Open(string connectionString);

    private Db DbOf(string connectionString) => new(
        Microsoft.Extensions.Options.Options.Create(new DatabaseOptions { Provider = Provider, ConnectionString = connectionString }),
        new Microsoft.Extensions.Hosting.Internal.HostingEnvironment { ContentRootPath = Path.GetTempPath() });

    private const string InsertPurchaseSql = """
        INSERT INTO purchases (id, member_id, merchant_id, store_id, receipt_number, card_id, occurred_at, recorded_at, currency,
            total_minor, amount_due_minor, points_redeemed, redeemed_value_minor, points_earned, earn_lot_id, refunded_minor,
            points_reversed, points_returned, request_hash, response_json)
        VALUES (@Id, 1, 1, 1, @Receipt, NULL, @At, @At, 'USD', 1000, 1000, 0, 0, 0, NULL, @Refunded, 0, 0, 'h', '{}')
        """;

    private const string InsertLineSql = """
        INSERT INTO purchase_lines (purchase_id, line_no, sku, category, quantity, amount_minor, refunded_quantity, refunded_minor)
        VALUES (@PurchaseId, @LineNo, @Sku, @Category, @Quantity, @AmountMinor, @RefundedQuantity, @RefundedMinor)
        """;

    [Fact]
    public async Task LinesWrittenAsRowsBeforeTheMigrationAreKeptOnTheirPurchaseWithWhatWasRefunded()
    {
        var cs = await NewDatabaseAsync();
        var db = DbOf(cs);
        Migrations.Apply(db, verbose: false, throughScript: 6);
        var at = new DateTime(2026, 3, 2, 9, 0, 0, DateTimeKind.Utc);
        ReceiptLine[] sold =
        [
            new(1, "Café ☕ 500g", null, 3, 1500, 1, 500),
            new(2, "SKU-\"quoted\"", "dairy", 1, 299, 0, 0),
            new(3, "SKU-3", "misc", 7, 701, 7, 701),
        ];
        await using (var c = Open(cs))
        {
            await c.ExecuteAsync(InsertPurchaseSql, new { Id = 1L, Receipt = "R1", At = at, Refunded = 1201L });
            await c.ExecuteAsync(InsertPurchaseSql, new { Id = 2L, Receipt = "R2", At = at, Refunded = 0L });
            // Written out of order: the document follows line numbers, not insertion order.
            foreach (var l in sold.Reverse())
            {
                await c.ExecuteAsync(InsertLineSql, new
                {
                    PurchaseId = 1L, l.LineNo, l.Sku, l.Category, l.Quantity, l.AmountMinor, l.RefundedQuantity, l.RefundedMinor,
                });
            }
        }

        Migrations.Apply(db, verbose: false);

        await using (var c = Open(cs))
        {
            var withLines = await c.ExecuteScalarAsync<string>("SELECT lines_json FROM purchases WHERE id = 1");
            Assert.Equal(sold, ReceiptLine.FromJson(withLines!));
            Assert.Empty(ReceiptLine.FromJson((await c.ExecuteScalarAsync<string>("SELECT lines_json FROM purchases WHERE id = 2"))!));
            var tables = Provider == DatabaseProvider.Sqlite
                ? "SELECT COUNT(*) FROM sqlite_master WHERE type = 'table' AND name = 'purchase_lines'"
                : "SELECT COUNT(*) FROM information_schema.tables WHERE table_name = 'purchase_lines'";
            Assert.Equal(0L, await c.ExecuteScalarAsync<long>(tables));
        }
    }
}

public sealed class SqliteReceiptLinesMigrationTests : ReceiptLinesMigrationTests, IDisposable
{
    private readonly SqliteTestDatabase _database = new();
    protected override DatabaseProvider Provider => DatabaseProvider.Sqlite;
    protected override Task<string> NewDatabaseAsync() => Task.FromResult(_database.ConnectionString);
    protected override DbConnection Open(string connectionString) => _database.Open();
    public void Dispose() => _database.Dispose();
}

public sealed class PostgresReceiptLinesMigrationTests : ReceiptLinesMigrationTests, IAsyncLifetime
{
    private string _server = "";
    private string _name = "";
    protected override DatabaseProvider Provider => DatabaseProvider.Postgres;

    protected override async Task<string> NewDatabaseAsync()
    {
        await using var admin = new NpgsqlConnection(_server);
        await admin.OpenAsync();
        await admin.ExecuteAsync($"CREATE DATABASE {_name}");
        return new NpgsqlConnectionStringBuilder(_server) { Database = _name }.ToString();
    }

    protected override DbConnection Open(string connectionString)
    {
        var c = new NpgsqlConnection(connectionString);
        c.Open();
        return c;
    }

    public Task InitializeAsync()
    {
        _server = Environment.GetEnvironmentVariable(PostgresTestDatabase.EnvironmentVariable) ?? "";
        if (string.IsNullOrWhiteSpace(_server))
        {
            throw new InvalidOperationException($"{PostgresTestDatabase.EnvironmentVariable} is not set: the PostgreSQL migration test cannot run.");
        }
        _name = $"loyalty_migration_{Environment.ProcessId}_{Guid.NewGuid():N}"[..48];
        return Task.CompletedTask;
    }

    public async Task DisposeAsync()
    {
        NpgsqlConnection.ClearAllPools();
        await using var admin = new NpgsqlConnection(_server);
        await admin.OpenAsync();
        await admin.ExecuteAsync($"DROP DATABASE IF EXISTS {_name} WITH (FORCE)");
    }
}
