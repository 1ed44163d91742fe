using System.Net;
using System.Net.Http.Json;
using Dapper;
using LoyaltyApi.Infrastructure;
using LoyaltyApi.Tests.Infrastructure;
using Npgsql;
using Xunit;

namespace LoyaltyApi.Tests.Api;

/// <summary>The service on PostgreSQL with a transaction pool of two connections.</summary>
public sealed class TwoConnectionPostgresFixture(PostgresTestDatabase database) : ApiFixture
{
    public override ITestDatabase Database => database;
    protected override Task PrepareDatabaseAsync() => database.ResetAsync();
    protected override string ServiceConnectionString =>
        new NpgsqlConnectionStringBuilder(database.ConnectionString) { MaxPoolSize = 2 }.ToString();
}

/// <summary>
/// Transactions and the statements outside them draw from separate pools on PostgreSQL, so a till's
/// quote or a balance look-up never queues behind purchases that hold every transaction connection.
/// </summary>
[Collection(PostgresCollection.Name), Trait("Database", "Postgres")]
public sealed class PostgresConnectionPoolTests(TwoConnectionPostgresFixture fx) : ApiTests(fx), IClassFixture<TwoConnectionPostgresFixture>
{
    private const string LockAccountSql = "SELECT member_id FROM point_accounts WHERE member_id = @Id FOR UPDATE";
    private const string LockWaitersSql = """
        SELECT COUNT(*) FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'
        """;

    [Fact]
    public async Task QuotesAndLookUpsAreAnsweredWhilePurchasesHoldEveryTransactionConnection()
    {
        var (memberId, card) = await Fx.EnrollAsync();
        await using var holder = (NpgsqlConnection)Fx.Database.Open();
        await using var hold = await holder.BeginTransactionAsync();
        await holder.ExecuteAsync(LockAccountSql, new { Id = memberId }, hold);

        // Each purchase opens its transaction on one of the two connections and waits for the member's lock.
        var purchases = Enumerable.Range(0, 2)
            .Select(_ => Fx.BrandPos.PostAsJsonAsync("/v1/purchases", Fx.PurchaseBody(card, 10.00m)))
            .ToArray();
        for (var waited = 0; await Fx.ScalarAsync<long>(LockWaitersSql) < 2; waited += 50)
        {
            Assert.True(waited < 10_000, "the two purchases never reached the member's lock");
            await Task.Delay(50);
        }

        using var deadline = new CancellationTokenSource(TimeSpan.FromSeconds(10));
        var quote = await ReadAsync(await Fx.BrandPos.PostAsJsonAsync("/v1/purchases/quote", Fx.PurchaseBody(card, 10.00m), deadline.Token), HttpStatusCode.OK);
        var lookUp = await ReadAsync(await Fx.BrandPos.GetAsync($"/v1/cards/{card}", deadline.Token), HttpStatusCode.OK);
        Assert.Equal(10, quote.GetProperty("pointsToEarn").GetInt64());
        Assert.Equal(memberId, lookUp.GetProperty("memberId").GetInt64());
        Assert.All(purchases, p => Assert.False(p.IsCompleted));

        await hold.RollbackAsync();
        foreach (var response in await Task.WhenAll(purchases)) await ReadAsync(response, HttpStatusCode.Created);
        var balance = await Fx.BalanceAsync(memberId);
        Assert.Equal(20, balance.GetProperty("pending").GetInt64());
    }

    [Fact]
    public void TransactionsTakeTheConnectionStringsPoolAndStatementsOutsideThemAFewMultiplexedConnections()
    {
        var (statements, transactions) = Db.SplitPostgresPools("Host=db;Database=loyalty;Maximum Pool Size=40;Multiplexing=true", 2);

        var s = new NpgsqlConnectionStringBuilder(statements);
        var t = new NpgsqlConnectionStringBuilder(transactions);
        Assert.True(s.Multiplexing);
        Assert.Equal(2, s.MaxPoolSize);
        Assert.False(t.Multiplexing);
        Assert.Equal(40, t.MaxPoolSize);
        Assert.Equal("loyalty", t.Database);
    }

    [Theory]
    [InlineData("Host=db;Multiplexing=false", 2)]
    [InlineData("Host=db;Multiplexing=true", 0)]
    public void MultiplexingTurnedOffOrNoMultiplexedConnectionsKeepsOnePool(string connectionString, int multiplexed)
    {
        var (statements, transactions) = Db.SplitPostgresPools(connectionString, multiplexed);

        Assert.Equal(connectionString, statements);
        Assert.Equal(connectionString, transactions);
    }
}
