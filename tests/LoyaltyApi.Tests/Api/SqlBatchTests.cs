using System.Net;
using System.Net.Http.Json;
using LoyaltyApi.Infrastructure;
using LoyaltyApi.Tests.Infrastructure;
using Microsoft.Extensions.DependencyInjection;
using Xunit;

namespace LoyaltyApi.Tests.Api;

/// <summary>SQL Server takes at most 2 100 parameters per command; a longer batch is cut between statements.</summary>
public abstract class SqlBatchTests(ApiFixture fx) : ApiTests(fx)
{
    private const string InsertLineSql = """
        INSERT INTO purchase_lines (purchase_id, line_no, sku, category, quantity, amount_minor, refunded_quantity, refunded_minor)
        VALUES (@PurchaseId, @LineNo, @Sku, @Category, @Quantity, @AmountMinor, 0, 0)
        """;

    private async Task ExecuteCutBatchAsync(Db db, long purchaseId, bool commit)
    {
        await using var connection = await db.OpenAsync(CancellationToken.None);
        await using var tx = await Db.BeginAsync(connection, CancellationToken.None);
        // 30 rows of 6 parameters against a limit of 20: one command per multi-row statement at most.
        var batch = new SqlBatch(db, maxParameters: 20);
        batch.AddRows(InsertLineSql, Enumerable.Range(100, 30)
            .Select(n => new { PurchaseId = purchaseId, LineNo = n, Sku = $"S{n}", Category = (string?)null, Quantity = 1, AmountMinor = 100L })
            .ToArray());
        await batch.ExecuteAsync(connection, tx, CancellationToken.None);
        if (commit) await tx.CommitAsync(); else await tx.RollbackAsync();
    }

    [Fact]
    public async Task ABatchOverTheParameterLimitIsSentInPiecesInsideOneTransaction()
    {
        var (_, card) = await Fx.EnrollAsync();
        var purchase = await ReadAsync(await Fx.BrandPos.PostAsJsonAsync("/v1/purchases", Fx.PurchaseBody(card, 10.00m)), HttpStatusCode.Created);
        var id = purchase.GetProperty("purchaseId").GetInt64();
        var db = Fx.Factory.Services.GetRequiredService<Db>();
        const string count = "SELECT COUNT(*) FROM purchase_lines WHERE purchase_id = @Id AND line_no >= 100";

        await ExecuteCutBatchAsync(db, id, commit: false);
        Assert.Equal(0, await Fx.ScalarAsync<long>(count, new { Id = id }));

        await ExecuteCutBatchAsync(db, id, commit: true);
        Assert.Equal(30, await Fx.ScalarAsync<long>(count, new { Id = id }));
        Assert.Equal(Enumerable.Range(100, 30).Select(n => $"S{n}"),
            await Fx.QueryAsync<string>("SELECT sku FROM purchase_lines WHERE purchase_id = @Id AND line_no >= 100 ORDER BY line_no", new { Id = id }));
    }
}
