using System.Net;
using System.Net.Http.Json;
using Dapper;
using LoyaltyApi.Infrastructure;
using LoyaltyApi.Tests.Infrastructure;
using Microsoft.Extensions.DependencyInjection;
using Xunit;

namespace LoyaltyApi.Tests.Api;

/// <summary>
/// How write batches reach the database: cut between statements where SQL Server's 2 100-parameter
/// limit requires it, and ending with the commit on PostgreSQL.
/// </summary>
public abstract class SqlBatchTests(ApiFixture fx) : ApiTests(fx)
{
    // Refund lines are the vehicle: a table with a multi-column key and no foreign keys, and rows that
    // stay valid as long as their refund exists (the fixture checks that no row points at nothing).
    private const string InsertLineSql = """
        INSERT INTO refund_lines (refund_id, line_no, quantity, amount_minor)
        VALUES (@RefundId, @LineNo, @Quantity, @AmountMinor)
        """;

    /// <summary>A refund recorded through the API, to hang test rows on.</summary>
    private async Task<long> RefundIdAsync()
    {
        var (_, card) = await Fx.EnrollAsync();
        var purchase = await ReadAsync(await Fx.BrandPos.PostAsJsonAsync("/v1/purchases", Fx.PurchaseBody(card, 10.00m)), HttpStatusCode.Created);
        var refund = await ReadAsync(await Fx.BrandPos.PostAsJsonAsync($"/v1/purchases/{purchase.GetProperty("purchaseId").GetInt64()}/refunds",
            new { refundNumber = Fx.Unique("F"), occurredAt = Fx.Clock.Now, amount = 1.00m }), HttpStatusCode.Created);
        return refund.GetProperty("refundId").GetInt64();
    }

    private async Task ExecuteCutBatchAsync(Db db, long refundId, bool commit)
    {
        await using var connection = await db.OpenAsync(CancellationToken.None);
        await using var tx = await Db.BeginAsync(connection, CancellationToken.None);
        // 30 rows of 4 parameters against a limit of 10: on SQLite one command per multi-row statement at most;
        // PostgreSQL's batch goes whole (each statement numbers its own placeholders), and must be as atomic.
        var batch = new SqlBatch(db, maxParameters: 10);
        batch.AddRows(InsertLineSql, Enumerable.Range(100, 30).Select(n => Line(refundId, n)).ToArray());
        await batch.ExecuteAsync(connection, tx, CancellationToken.None);
        if (commit) await tx.CommitAsync(); else await tx.RollbackAsync();
    }

    [Fact]
    public async Task ABatchOverTheParameterLimitIsSentInPiecesInsideOneTransaction()
    {
        var id = await RefundIdAsync();
        var db = Fx.Factory.Services.GetRequiredService<Db>();
        const string count = "SELECT COUNT(*) FROM refund_lines WHERE refund_id = @Id AND line_no >= 100";

        await ExecuteCutBatchAsync(db, id, commit: false);
        Assert.Equal(0, await Fx.ScalarAsync<long>(count, new { Id = id }));

        await ExecuteCutBatchAsync(db, id, commit: true);
        Assert.Equal(30, await Fx.ScalarAsync<long>(count, new { Id = id }));
        Assert.Equal(Enumerable.Range(100, 30).Select(n => n * 10L),
            await Fx.QueryAsync<long>("SELECT amount_minor FROM refund_lines WHERE refund_id = @Id AND line_no >= 100 ORDER BY line_no", new { Id = id }));
    }

    private static object Line(long refundId, int lineNo) => new { RefundId = refundId, LineNo = lineNo, Quantity = 1, AmountMinor = lineNo * 10L };

    [Fact]
    public async Task NothingRunsAfterTheBatchThatCommitsAndTheConnectionsNextTransactionCommitsAsUsual()
    {
        var id = await RefundIdAsync();
        var db = Fx.Factory.Services.GetRequiredService<Db>();
        var ct = CancellationToken.None;

        // Alternating on pooled connections: a transaction committed by its batch must not make the
        // next one on the same connection skip its own commit.
        for (var i = 0; i < 5; i++)
        {
            var lineNo = 200 + 2 * i;
            await Transactions.RunAsync(db, async (c, tx) =>
            {
                await new SqlBatch(db).AddRows(InsertLineSql, [Line(id, lineNo)]).ExecuteAndCommitAsync(c, tx, ct);
                return 0;
            }, ct);
            await Transactions.RunAsync(db, async (c, tx) =>
            {
                await new SqlBatch(db).AddRows(InsertLineSql, [Line(id, lineNo + 1)]).ExecuteAsync(c, tx, ct);
                return 0;
            }, ct);
        }
        Assert.Equal(Enumerable.Range(200, 10),
            await Fx.QueryAsync<int>("SELECT line_no FROM refund_lines WHERE refund_id = @Id AND line_no >= 200 ORDER BY line_no", new { Id = id }));

        // A statement after the committing batch would run outside the transaction on PostgreSQL: refused.
        await Assert.ThrowsAsync<InvalidOperationException>(() => Transactions.RunAsync(db, async (c, tx) =>
        {
            await new SqlBatch(db).AddRows(InsertLineSql, [Line(id, 299)]).ExecuteAndCommitAsync(c, tx, ct);
            await new SqlBatch(db).AddRows(InsertLineSql, [Line(id, 300)]).ExecuteAsync(c, tx, ct);
            return 0;
        }, ct));
        Assert.Equal(1, await Fx.ScalarAsync<long>("SELECT COUNT(*) FROM refund_lines WHERE refund_id = @Id AND line_no = 299", new { Id = id }));
        Assert.Equal(0, await Fx.ScalarAsync<long>("SELECT COUNT(*) FROM refund_lines WHERE refund_id = @Id AND line_no = 300", new { Id = id }));
    }

    [Fact]
    public async Task AReceiptAnotherTillCommitsWhileThisOneWritesIsAConflictAndNothingOfThisOneIsKept()
    {
        var (_, first) = await Fx.EnrollAsync();
        var (member, second) = await Fx.EnrollAsync();
        var recorded = await ReadAsync(await Fx.BrandPos.PostAsJsonAsync("/v1/purchases", Fx.PurchaseBody(first, 10.00m)), HttpStatusCode.Created);
        var receipt = Fx.Unique("R");

        // Another till's transaction holds the receipt number, not yet committed.
        await using var other = Fx.Database.Open();
        await using var tx = await other.BeginTransactionAsync();
        await other.ExecuteAsync("""
            INSERT INTO purchases (member_id, merchant_id, store_id, receipt_number, card_id, occurred_at, recorded_at, currency,
                total_minor, amount_due_minor, points_redeemed, redeemed_value_minor, points_earned, earn_lot_id, refunded_minor,
                points_reversed, points_returned, lines_json, request_hash, response_json)
            SELECT member_id, merchant_id, store_id, @Receipt, card_id, occurred_at, recorded_at, currency,
                total_minor, amount_due_minor, 0, 0, 0, NULL, 0, 0, 0, lines_json, request_hash, response_json
            FROM purchases WHERE id = @Id
            """, new { Receipt = receipt, Id = recorded.GetProperty("purchaseId").GetInt64() }, tx);

        var pending = Fx.BrandPos.PostAsJsonAsync("/v1/purchases", Fx.PurchaseBody(second, 20.00m, redeem: 0, receipt: receipt));
        if (Fx.Database.Provider == DatabaseProvider.Postgres)
        {
            // This till's write batch reaches the receipt insert and waits on the unique index; once the
            // other commits, the batch fails halfway (its COMMIT never runs) and the retry finds the twin.
            var waited = false;
            for (var i = 0; i < 200 && !waited; i++)
            {
                waited = await Fx.ScalarAsync<long>("SELECT COUNT(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND query LIKE '%INSERT INTO purchases%'") > 0;
                if (!waited) await Task.Delay(50);
            }
            Assert.True(waited, "the purchase never waited on the other till's receipt");
        }
        else
        {
            // SQLite: the other transaction holds the write lock; this purchase waits to begin, then reads the twin.
            await Task.Delay(300);
        }
        await tx.CommitAsync();

        await AssertProblemAsync(await pending, HttpStatusCode.Conflict, "receipt_already_recorded", "receiptNumber");
        Assert.Equal(1, await Fx.ScalarAsync<long>("SELECT COUNT(*) FROM purchases WHERE receipt_number = @Receipt", new { Receipt = receipt }));
        Assert.Equal(0, await Fx.ScalarAsync<long>("SELECT COUNT(*) FROM point_lots WHERE member_id = @Member", new { Member = member }));
        Assert.Equal(0, await Fx.ScalarAsync<long>("SELECT COUNT(*) FROM ledger_entries WHERE member_id = @Member", new { Member = member }));
    }
}
