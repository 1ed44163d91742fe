using System.Net;
using System.Net.Http.Json;
using System.Text.Json;
using LoyaltyApi.Tests.Infrastructure;
using Xunit;

namespace LoyaltyApi.Tests.Api;

public abstract class RefundTests(ApiFixture fx) : ApiTests(fx)
{
    private async Task<JsonElement> PurchaseAsync(string card, decimal total, long redeem = 0, object? lines = null)
    {
        object body = lines is null
            ? Fx.PurchaseBody(card, total, redeem)
            : new
            {
                storeId = Fx.BrandStoreId, receiptNumber = Fx.Unique("R"), cardNumber = card, occurredAt = Fx.Clock.Now,
                currency = "USD", total, lines, pointsToRedeem = redeem,
            };
        return await ReadAsync(await Fx.BrandPos.PostAsJsonAsync("/v1/purchases", body), HttpStatusCode.Created);
    }

    /// <summary>The lines a purchase keeps (purchases.lines_json), in their stored order.</summary>
    private async Task<List<JsonElement>> StoredLinesAsync(long purchaseId)
    {
        var json = await Fx.ScalarAsync<string>("SELECT lines_json FROM purchases WHERE id = @Id", new { Id = purchaseId });
        return [.. JsonDocument.Parse(json!).RootElement.Clone().EnumerateArray()];
    }

    private Task<HttpResponseMessage> RefundAsync(long purchaseId, object extra, HttpClient? client = null)
    {
        var body = new Dictionary<string, object?> { ["refundNumber"] = Fx.Unique("F"), ["occurredAt"] = Fx.Clock.Now };
        foreach (var p in extra.GetType().GetProperties()) body[p.Name] = p.GetValue(extra);
        return (client ?? Fx.BrandPos).PostAsJsonAsync($"/v1/purchases/{purchaseId}/refunds", body);
    }

    [Fact]
    public async Task AFullRefundReversesEarnedPointsAndGivesRedeemedPointsBack()
    {
        var (member, card) = await Fx.EnrollAsync();
        await Fx.AdjustAsync(member, 300);
        var purchase = await PurchaseAsync(card, 100.00m, redeem: 200);
        var id = purchase.GetProperty("purchaseId").GetInt64();

        var refund = await ReadAsync(await RefundAsync(id, new { }), HttpStatusCode.Created);

        Assert.Equal(98, refund.GetProperty("pointsReversed").GetInt64());
        Assert.Equal(200, refund.GetProperty("pointsReturned").GetInt64());
        Assert.Equal(100.00m, refund.GetProperty("refundedAmount").GetDecimal());
        var balance = await Fx.BalanceAsync(member);
        Assert.Equal(300, balance.GetProperty("available").GetInt64());
        Assert.Equal(0, balance.GetProperty("pending").GetInt64());
        // Given back with the original lot's expiry.
        var expiries = await Fx.QueryAsync<DateTime>("SELECT expires_at FROM point_lots WHERE member_id = @member AND source IN ('adjustment', 'redeem_return') ORDER BY id", new { member });
        Assert.Equal(2, expiries.Count);
        Assert.Equal(expiries[0], expiries[1]);
        await AssertProblemAsync(await RefundAsync(id, new { amount = 1.00m }), HttpStatusCode.UnprocessableEntity, "already_refunded");
    }

    [Fact]
    public async Task PartialRefundsReverseInProportionAndNeverMoreThanWasEarned()
    {
        var (member, card) = await Fx.EnrollAsync();
        var id = (await PurchaseAsync(card, 10.00m)).GetProperty("purchaseId").GetInt64(); // earns 10

        var a = await ReadAsync(await RefundAsync(id, new { amount = 3.33m }), HttpStatusCode.Created);
        var b = await ReadAsync(await RefundAsync(id, new { amount = 3.33m }), HttpStatusCode.Created);
        var c = await ReadAsync(await RefundAsync(id, new { amount = 3.34m }), HttpStatusCode.Created);

        // On the cumulative share: floor(10 × 3.33/10) = 3, floor(10 × 6.66/10) − 3 = 3, then the rest: 4.
        Assert.Equal(3, a.GetProperty("pointsReversed").GetInt64());
        Assert.Equal(3, b.GetProperty("pointsReversed").GetInt64());
        Assert.Equal(4, c.GetProperty("pointsReversed").GetInt64());
        Assert.Equal(0, (await Fx.BalanceAsync(member)).GetProperty("pending").GetInt64());
        await AssertProblemAsync(await RefundAsync(id, new { amount = 0.01m }), HttpStatusCode.UnprocessableEntity, "already_refunded");
    }

    [Fact]
    public async Task ARefundAboveWhatIsLeftIsRejected()
    {
        var (_, card) = await Fx.EnrollAsync();
        var id = (await PurchaseAsync(card, 20.00m)).GetProperty("purchaseId").GetInt64();

        var r = await RefundAsync(id, new { amount = 20.01m });

        await AssertProblemAsync(r, HttpStatusCode.UnprocessableEntity, "refund_exceeds_purchase", "amount");
        Assert.Equal(0, await Fx.ScalarAsync<long>("SELECT COUNT(*) FROM refunds WHERE purchase_id = @id", new { id }));
    }

    [Fact]
    public async Task ARefundByLinesRefundsThoseLinesAmounts()
    {
        var (_, card) = await Fx.EnrollAsync();
        var lines = new[]
        {
            new { sku = "COFFEE", category = "drinks", quantity = 3, amount = 10.00m },
            new { sku = "CAKE", category = "food", quantity = 1, amount = 5.00m },
        };
        var id = (await PurchaseAsync(card, 15.00m, lines: lines)).GetProperty("purchaseId").GetInt64(); // earns 15

        var first = await ReadAsync(await RefundAsync(id, new { lines = new[] { new { lineNo = 1, quantity = 1 } } }), HttpStatusCode.Created);
        var rest = await ReadAsync(await RefundAsync(id, new { lines = new[] { new { lineNo = 1, quantity = 2 } } }), HttpStatusCode.Created);
        var tooMany = await RefundAsync(id, new { lines = new[] { new { lineNo = 1, quantity = 1 } } });
        var noLine = await RefundAsync(id, new { lines = new[] { new { lineNo = 9, quantity = 1 } } });

        Assert.Equal(3.33m, first.GetProperty("refundedAmount").GetDecimal());
        Assert.Equal(6.67m, rest.GetProperty("refundedAmount").GetDecimal());
        Assert.Equal(10.00m, rest.GetProperty("totalRefunded").GetDecimal());
        Assert.Equal(3, first.GetProperty("pointsReversed").GetInt64());  // floor(15 × 3.33/15)
        Assert.Equal(7, rest.GetProperty("pointsReversed").GetInt64());   // floor(15 × 10/15) − 3
        await AssertProblemAsync(tooMany, HttpStatusCode.UnprocessableEntity, "refund_exceeds_line", "lines[0].quantity");
        await AssertProblemAsync(noLine, HttpStatusCode.UnprocessableEntity, "unknown_line", "lines[0].lineNo");
    }

    [Fact]
    public async Task AReceiptKeepsEveryLineInOrderAndARefundByLinesChangesOnlyTheLinesItRefunds()
    {
        var (_, card) = await Fx.EnrollAsync();
        var lines = Enumerable.Range(1, 23).Select(i => new { sku = $"SKU-{i}", category = "misc", quantity = i, amount = i * 1.00m }).ToArray();
        var id = (await PurchaseAsync(card, 276.00m, lines: lines)).GetProperty("purchaseId").GetInt64();

        var kept = await StoredLinesAsync(id);
        Assert.Equal(Enumerable.Range(1, 23), kept.Select(l => l.GetProperty("lineNo").GetInt32()));
        Assert.Equal(Enumerable.Range(1, 23).Select(i => $"SKU-{i}"), kept.Select(l => l.GetProperty("sku").GetString()));
        Assert.All(kept, l =>
        {
            var n = l.GetProperty("lineNo").GetInt32();
            // The stored form, which migration 0007 also writes: nothing derived is kept.
            Assert.Equal(["lineNo", "sku", "category", "quantity", "amountMinor", "refundedQuantity", "refundedMinor"],
                l.EnumerateObject().Select(p => p.Name));
            Assert.Equal("misc", l.GetProperty("category").GetString());
            Assert.Equal(n, l.GetProperty("quantity").GetInt32());
            Assert.Equal(100L * n, l.GetProperty("amountMinor").GetInt64());
            Assert.Equal(0, l.GetProperty("refundedQuantity").GetInt32());
        });

        var refund = await ReadAsync(await RefundAsync(id, new { lines = new[] { new { lineNo = 23, quantity = 23 } } }), HttpStatusCode.Created);
        Assert.Equal(23.00m, refund.GetProperty("refundedAmount").GetDecimal());
        var after = await StoredLinesAsync(id);
        Assert.Equal(23, after[22].GetProperty("refundedQuantity").GetInt32());
        Assert.Equal(2300L, after[22].GetProperty("refundedMinor").GetInt64());
        // The other lines are kept as they were.
        Assert.All(after.Take(22), l => Assert.Equal(0, l.GetProperty("refundedQuantity").GetInt32()));
        Assert.Equal(kept.Take(22).Select(l => l.GetRawText()), after.Take(22).Select(l => l.GetRawText()));
    }

    [Fact]
    public async Task ARefundAfterThePointsWereSpentLeavesADebtThatTheNextEarningPaysFirst()
    {
        var (member, card) = await Fx.EnrollAsync();
        var first = (await PurchaseAsync(card, 100.00m)).GetProperty("purchaseId").GetInt64(); // 100 pending
        Fx.Clock.Advance(TimeSpan.FromDays(15));
        await PurchaseAsync(card, 200.00m, redeem: 100); // spends them; earns 199 pending
        Assert.Equal(0, (await Fx.BalanceAsync(member)).GetProperty("available").GetInt64());

        var refund = await ReadAsync(await RefundAsync(first, new { }), HttpStatusCode.Created);

        Assert.Equal(100, refund.GetProperty("pointsReversed").GetInt64());
        var afterRefund = await Fx.BalanceAsync(member);
        // The 199 pending points were granted before the debt arose, so the debt stands until the next grant.
        Assert.Equal(-100, afterRefund.GetProperty("available").GetInt64());
        Assert.Equal(199, afterRefund.GetProperty("pending").GetInt64());
        Assert.Equal(100, await Fx.ScalarAsync<long>("SELECT debt_points FROM point_accounts WHERE member_id = @member", new { member }));

        var next = await ReadAsync(await Fx.BrandPos.PostAsJsonAsync("/v1/purchases", Fx.PurchaseBody(card, 60.00m)), HttpStatusCode.Created);

        Assert.Equal(60, next.GetProperty("pointsEarned").GetInt64());
        Assert.Equal(-40, next.GetProperty("balance").GetProperty("available").GetInt64());
        Assert.Equal(199, next.GetProperty("balance").GetProperty("pending").GetInt64());
        Assert.Equal(40, await Fx.ScalarAsync<long>("SELECT debt_points FROM point_accounts WHERE member_id = @member", new { member }));
        var redeem = await Fx.BrandPos.PostAsJsonAsync("/v1/purchases", Fx.PurchaseBody(card, 10.00m, redeem: 1));
        await AssertProblemAsync(redeem, HttpStatusCode.UnprocessableEntity, "insufficient_points", "pointsToRedeem");
    }

    [Fact]
    public async Task TwoTillsRefundingTheSamePurchaseAtOnceRefundItOnlyOnce()
    {
        var (member, card) = await Fx.EnrollAsync();
        var id = (await PurchaseAsync(card, 100.00m)).GetProperty("purchaseId").GetInt64();

        var both = await Task.WhenAll(RefundAsync(id, new { }), RefundAsync(id, new { }, Fx.BrandStorePos));

        Assert.Single(both, r => r.StatusCode == HttpStatusCode.Created);
        await AssertProblemAsync(both.Single(r => r.StatusCode != HttpStatusCode.Created), HttpStatusCode.UnprocessableEntity, "already_refunded");
        Assert.Equal(10000, await Fx.ScalarAsync<long>("SELECT refunded_minor FROM purchases WHERE id = @id", new { id }));
        Assert.Equal(1, await Fx.ScalarAsync<long>("SELECT COUNT(*) FROM refunds WHERE purchase_id = @id", new { id }));
        Assert.Equal(0, (await Fx.BalanceAsync(member)).GetProperty("pending").GetInt64());
    }

    [Fact]
    public async Task PointsThatAreAlreadyExpiredWhenGrantedDoNotPayOffDebt()
    {
        var (member, card) = await Fx.EnrollAsync();
        var first = (await PurchaseAsync(card, 100.00m)).GetProperty("purchaseId").GetInt64();
        Fx.Clock.Advance(TimeSpan.FromDays(15));
        await PurchaseAsync(card, 200.00m, redeem: 100);
        await ReadAsync(await RefundAsync(first, new { }), HttpStatusCode.Created); // debt of 100
        var replayedFromLongAgo = new
        {
            storeId = Fx.BrandStoreId, receiptNumber = Fx.Unique("R"), cardNumber = card, occurredAt = Fx.Clock.Now.AddDays(-400),
            currency = "USD", total = 50.00m, lines = new[] { new { sku = "OLD", quantity = 1, amount = 50.00m } }, pointsToRedeem = 0,
        };

        var late = await ReadAsync(await Fx.BrandPos.PostAsJsonAsync("/v1/purchases", replayedFromLongAgo), HttpStatusCode.Created);

        Assert.Equal(50, late.GetProperty("pointsEarned").GetInt64());
        Assert.True(late.GetProperty("pointsExpireAt").GetDateTime() < Fx.Clock.Now.UtcDateTime);
        Assert.Equal(100, await Fx.ScalarAsync<long>("SELECT debt_points FROM point_accounts WHERE member_id = @member", new { member }));
        Assert.Equal(-100, (await Fx.BalanceAsync(member)).GetProperty("available").GetInt64());
    }

    [Fact]
    public async Task ARetriedRefundIsCountedOnceAndADifferentBodyIsAConflict()
    {
        var (_, card) = await Fx.EnrollAsync();
        var id = (await PurchaseAsync(card, 50.00m)).GetProperty("purchaseId").GetInt64();
        var body = new { refundNumber = Fx.Unique("F"), occurredAt = Fx.Clock.Now, amount = 10.00m };

        var recorded = await Fx.BrandPos.PostAsJsonAsync($"/v1/purchases/{id}/refunds", body);
        var first = await ReadAsync(recorded, HttpStatusCode.Created);
        var retry = await Fx.BrandPos.PostAsJsonAsync($"/v1/purchases/{id}/refunds", body);
        var again = await ReadAsync(retry, HttpStatusCode.Created);
        var changed = await Fx.BrandPos.PostAsJsonAsync($"/v1/purchases/{id}/refunds", body with { amount = 11.00m });

        Assert.Equal(first.GetProperty("refundId").GetInt64(), again.GetProperty("refundId").GetInt64());
        Assert.Equal(first.GetRawText(), again.GetRawText());
        Assert.Equal($"/v1/purchases/{id}/refunds/{first.GetProperty("refundId").GetInt64()}", recorded.Headers.Location?.OriginalString);
        Assert.Equal(recorded.Headers.Location, retry.Headers.Location);
        await AssertProblemAsync(changed, HttpStatusCode.Conflict, "refund_already_recorded", "refundNumber");
        Assert.Equal(1000, await Fx.ScalarAsync<long>("SELECT refunded_minor FROM purchases WHERE id = @id", new { id }));
    }

    [Fact]
    public async Task AnotherMerchantCannotRefundOrSeeAPurchase()
    {
        var (_, card) = await Fx.EnrollAsync();
        var id = (await PurchaseAsync(card, 50.00m)).GetProperty("purchaseId").GetInt64();

        var r = await RefundAsync(id, new { }, Fx.PartnerPos);
        var read = await Fx.PartnerPos.GetAsync($"/v1/purchases/{id}");
        var otherStoreRead = await Fx.Client(await Fx.CreateKeyAsync("store 2 till", "pos", Fx.BrandId, Fx.BrandStore2Id)).GetAsync($"/v1/purchases/{id}");
        var ownRead = await ReadAsync(await Fx.BrandStorePos.GetAsync($"/v1/purchases/{id}"), HttpStatusCode.OK);

        await AssertProblemAsync(r, HttpStatusCode.NotFound, "not_found", "id");
        await AssertProblemAsync(read, HttpStatusCode.NotFound, "not_found", "id");
        await AssertProblemAsync(otherStoreRead, HttpStatusCode.NotFound, "not_found", "id");
        Assert.Equal(50.00m, ownRead.GetProperty("total").GetDecimal());
        Assert.Equal(0, await Fx.ScalarAsync<long>("SELECT COUNT(*) FROM refunds WHERE purchase_id = @id", new { id }));
    }
}
