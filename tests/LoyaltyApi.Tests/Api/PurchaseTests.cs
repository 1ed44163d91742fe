using System.Net;
using System.Net.Http.Json;
using System.Text.Json;
using LoyaltyApi.Tests.Infrastructure;
using Xunit;

namespace LoyaltyApi.Tests.Api;

public abstract class PurchaseTests(ApiFixture fx) : ApiTests(fx)
{
    [Fact]
    public async Task APurchaseEarnsPendingPointsAndRedeemsFromTheBalance()
    {
        var (member, card) = await Fx.EnrollAsync();
        await Fx.AdjustAsync(member, 500);

        var response = await ReadAsync(await Fx.BrandPos.PostAsJsonAsync("/v1/purchases", Fx.PurchaseBody(card, 100.50m, redeem: 30)), HttpStatusCode.Created);

        Assert.Equal(30, response.GetProperty("pointsRedeemed").GetInt64());
        Assert.Equal(0.30m, response.GetProperty("redeemedValue").GetDecimal());
        Assert.Equal(100.20m, response.GetProperty("amountDue").GetDecimal());
        Assert.Equal(100, response.GetProperty("pointsEarned").GetInt64()); // floor(100.20 × 1)
        Assert.Equal(470, response.GetProperty("balance").GetProperty("available").GetInt64());
        Assert.Equal(100, response.GetProperty("balance").GetProperty("pending").GetInt64());
        var purchaseId = response.GetProperty("purchaseId").GetInt64();
        Assert.Equal(10020, await Fx.ScalarAsync<long>("SELECT amount_due_minor FROM purchases WHERE id = @Id", new { Id = purchaseId }));
        Assert.Equal(2, await Fx.ScalarAsync<long>("SELECT COUNT(*) FROM ledger_entries WHERE purchase_id = @Id", new { Id = purchaseId }));
        var balance = await Fx.BalanceAsync(member);
        Assert.Equal(470, balance.GetProperty("available").GetInt64());
        Assert.Equal(100, balance.GetProperty("pending").GetInt64());
    }

    [Fact]
    public async Task AQuoteMatchesThePurchaseAndWritesNothing()
    {
        var (member, card) = await Fx.EnrollAsync();
        await Fx.AdjustAsync(member, 10_000);
        var body = Fx.PurchaseBody(card, 80.00m, redeem: 1000);

        var quote = await ReadAsync(await Fx.BrandPos.PostAsJsonAsync("/v1/purchases/quote", body), HttpStatusCode.OK);

        Assert.Equal(4000, quote.GetProperty("maxRedeemablePoints").GetInt64()); // 50% of 80.00 at 0.01 a point
        Assert.Equal(40.00m, quote.GetProperty("maxRedeemableValue").GetDecimal());
        Assert.Equal(70.00m, quote.GetProperty("amountDue").GetDecimal());
        Assert.Equal(70, quote.GetProperty("pointsToEarn").GetInt64());
        Assert.Equal(0, await Fx.ScalarAsync<long>("SELECT COUNT(*) FROM purchases WHERE member_id = @member", new { member }));
        Assert.Equal(10_000, (await Fx.BalanceAsync(member)).GetProperty("available").GetInt64());

        var purchase = await ReadAsync(await Fx.BrandPos.PostAsJsonAsync("/v1/purchases", body), HttpStatusCode.Created);
        Assert.Equal(quote.GetProperty("pointsToEarn").GetInt64(), purchase.GetProperty("pointsEarned").GetInt64());
        Assert.Equal(quote.GetProperty("amountDue").GetDecimal(), purchase.GetProperty("amountDue").GetDecimal());
    }

    [Fact]
    public async Task ARetriedPurchaseIsCountedOnce()
    {
        var (member, card) = await Fx.EnrollAsync();
        var body = Fx.PurchaseBody(card, 25.00m);

        var recorded = await Fx.BrandPos.PostAsJsonAsync("/v1/purchases", body);
        var first = await ReadAsync(recorded, HttpStatusCode.Created);
        var retry = await Fx.BrandPos.PostAsJsonAsync("/v1/purchases", body);
        var second = await ReadAsync(retry, HttpStatusCode.Created);

        Assert.Equal("true", retry.Headers.GetValues("Idempotent-Replayed").Single());
        Assert.Equal(first.GetRawText(), second.GetRawText());
        Assert.Equal($"/v1/purchases/{first.GetProperty("purchaseId").GetInt64()}", recorded.Headers.Location?.OriginalString);
        Assert.Equal(recorded.Headers.Location, retry.Headers.Location);
        Assert.Equal("application/json", retry.Content.Headers.ContentType?.MediaType);
        Assert.Equal(1, await Fx.ScalarAsync<long>("SELECT COUNT(*) FROM purchases WHERE member_id = @member", new { member }));
        Assert.Equal(25, (await Fx.BalanceAsync(member)).GetProperty("pending").GetInt64());
    }

    [Fact]
    public async Task TwentyIdenticalRacingRequestsRecordOnePurchase()
    {
        var (member, card) = await Fx.EnrollAsync();
        await Fx.AdjustAsync(member, 100);
        var body = Fx.PurchaseBody(card, 40.00m, redeem: 20);

        var responses = await Task.WhenAll(Enumerable.Range(0, 20).Select(_ => Fx.BrandPos.PostAsJsonAsync("/v1/purchases", body)));

        var ids = new HashSet<long>();
        foreach (var r in responses) ids.Add((await ReadAsync(r, HttpStatusCode.Created)).GetProperty("purchaseId").GetInt64());
        Assert.Single(ids);
        Assert.Equal(1, await Fx.ScalarAsync<long>("SELECT COUNT(*) FROM purchases WHERE member_id = @member", new { member }));
        Assert.Equal(1, await Fx.ScalarAsync<long>("SELECT COUNT(*) FROM ledger_entries WHERE member_id = @member AND entry_type = 'redeem'", new { member }));
        var balance = await Fx.BalanceAsync(member);
        Assert.Equal(80, balance.GetProperty("available").GetInt64());
        Assert.Equal(39, balance.GetProperty("pending").GetInt64()); // floor(39.80)
    }

    [Fact]
    public async Task TheSameReceiptWithADifferentBodyIsAConflict()
    {
        var (member, card) = await Fx.EnrollAsync();
        var receipt = Fx.Unique("R");
        await ReadAsync(await Fx.BrandPos.PostAsJsonAsync("/v1/purchases", Fx.PurchaseBody(card, 10.00m, receipt: receipt)), HttpStatusCode.Created);

        var clash = await Fx.BrandPos.PostAsJsonAsync("/v1/purchases", Fx.PurchaseBody(card, 11.00m, receipt: receipt));

        await AssertProblemAsync(clash, HttpStatusCode.Conflict, "receipt_already_recorded", "receiptNumber");
        Assert.Equal(1, await Fx.ScalarAsync<long>("SELECT COUNT(*) FROM purchases WHERE member_id = @member", new { member }));
    }

    [Fact]
    public async Task AnIdempotencyKeyReplaysTheSameBodyAndRejectsADifferentOne()
    {
        var (member, card) = await Fx.EnrollAsync();
        var key = Guid.NewGuid().ToString();
        var body = Fx.PurchaseBody(card, 12.00m);

        var first = await SendWithKeyAsync(key, body);
        var replay = await SendWithKeyAsync(key, body);
        var other = await SendWithKeyAsync(key, Fx.PurchaseBody(card, 13.00m));

        var a = await ReadAsync(first, HttpStatusCode.Created);
        var b = await ReadAsync(replay, HttpStatusCode.Created);
        Assert.Equal(a.GetRawText(), b.GetRawText());
        Assert.True(replay.Headers.Contains("Idempotent-Replayed"));
        await AssertProblemAsync(other, HttpStatusCode.Conflict, "idempotency_key_reused", "Idempotency-Key");
        Assert.Equal(1, await Fx.ScalarAsync<long>("SELECT COUNT(*) FROM purchases WHERE member_id = @member", new { member }));
        // The key's record holds the request's hash only: the replay is the purchase's own stored response.
        Assert.Equal("", await Fx.ScalarAsync<string>("SELECT response_json FROM idempotency_keys WHERE idem_key = @key", new { key }));
    }

    private Task<HttpResponseMessage> SendWithKeyAsync(string key, object body)
    {
        var request = new HttpRequestMessage(HttpMethod.Post, "/v1/purchases") { Content = JsonContent.Create(body) };
        request.Headers.Add("Idempotency-Key", key);
        return Fx.BrandPos.SendAsync(request);
    }

    [Fact]
    public async Task ARetryReplaysEvenAfterTheCardWasBlocked()
    {
        var (member, card) = await Fx.EnrollAsync();
        var key = Guid.NewGuid().ToString();
        var body = Fx.PurchaseBody(card, 15.00m);
        var first = await ReadAsync(await SendWithKeyAsync(key, body), HttpStatusCode.Created);
        await ReadAsync(await Fx.BrandPos.PostAsJsonAsync($"/v1/cards/{card}/block", new { reason = "lost" }), HttpStatusCode.OK);

        var retry = await Fx.BrandPos.PostAsJsonAsync("/v1/purchases", body);
        var keyed = await SendWithKeyAsync(key, body);

        Assert.Equal(first.GetRawText(), (await ReadAsync(retry, HttpStatusCode.Created)).GetRawText());
        Assert.Equal(first.GetRawText(), (await ReadAsync(keyed, HttpStatusCode.Created)).GetRawText());
        Assert.Equal(1, await Fx.ScalarAsync<long>("SELECT COUNT(*) FROM purchases WHERE member_id = @member", new { member }));
    }

    [Fact]
    public async Task ARetriedRedemptionReplaysAfterThePointsWereSpentElsewhere()
    {
        var (member, card) = await Fx.EnrollAsync();
        await Fx.AdjustAsync(member, 100);
        var key = Guid.NewGuid().ToString();
        var body = Fx.PurchaseBody(card, 40.00m, redeem: 60);
        var first = await ReadAsync(await SendWithKeyAsync(key, body), HttpStatusCode.Created);
        await ReadAsync(await Fx.BrandPos.PostAsJsonAsync("/v1/purchases", Fx.PurchaseBody(card, 40.00m, redeem: 40)), HttpStatusCode.Created);

        // Retried now, the redemption could not be paid: the retry must find the first attempt, not reject it.
        var retry = await Fx.BrandPos.PostAsJsonAsync("/v1/purchases", body);
        var keyed = await SendWithKeyAsync(key, body);

        Assert.Equal(first.GetRawText(), (await ReadAsync(retry, HttpStatusCode.Created)).GetRawText());
        Assert.Equal(first.GetRawText(), (await ReadAsync(keyed, HttpStatusCode.Created)).GetRawText());
        Assert.Equal(2, await Fx.ScalarAsync<long>("SELECT COUNT(*) FROM purchases WHERE member_id = @member", new { member }));
        Assert.Equal(-100, await Fx.ScalarAsync<long>("SELECT SUM(points) FROM ledger_entries WHERE member_id = @member AND entry_type = 'redeem'", new { member }));
        Assert.Equal(0, (await Fx.BalanceAsync(member)).GetProperty("available").GetInt64());
    }

    [Fact]
    public async Task FiftyConcurrentRedemptionsAgainstABalanceForTenLetExactlyTenThrough()
    {
        var (member, card) = await Fx.EnrollAsync();
        await Fx.AdjustAsync(member, 10 * 100);

        var responses = await Task.WhenAll(Enumerable.Range(0, 50).Select(_ =>
            Fx.BrandPos.PostAsJsonAsync("/v1/purchases", Fx.PurchaseBody(card, 10.00m, redeem: 100))));

        var ok = 0;
        foreach (var r in responses)
        {
            if (r.StatusCode == HttpStatusCode.Created) ok++;
            else await AssertProblemAsync(r, HttpStatusCode.UnprocessableEntity, "insufficient_points", "pointsToRedeem");
        }
        Assert.Equal(10, ok);
        Assert.Equal(0, (await Fx.BalanceAsync(member)).GetProperty("available").GetInt64());
        Assert.Equal(10, await Fx.ScalarAsync<long>("SELECT COUNT(*) FROM purchases WHERE member_id = @member", new { member }));
        Assert.Equal(-1000, await Fx.ScalarAsync<long>("SELECT SUM(points) FROM ledger_entries WHERE member_id = @member AND entry_type = 'redeem'", new { member }));
    }

    [Fact]
    public async Task RedeemingMoreThanTheBalanceIsRejected()
    {
        var (member, card) = await Fx.EnrollAsync();
        await Fx.AdjustAsync(member, 50);

        var r = await Fx.BrandPos.PostAsJsonAsync("/v1/purchases", Fx.PurchaseBody(card, 10.00m, redeem: 51));

        await AssertProblemAsync(r, HttpStatusCode.UnprocessableEntity, "insufficient_points", "pointsToRedeem");
        Assert.Equal(0, await Fx.ScalarAsync<long>("SELECT COUNT(*) FROM purchases WHERE member_id = @member", new { member }));
        Assert.Equal(50, (await Fx.BalanceAsync(member)).GetProperty("available").GetInt64());
    }

    [Fact]
    public async Task RedeemingAboveTheReceiptCapIsRejected()
    {
        var (member, card) = await Fx.EnrollAsync();
        await Fx.AdjustAsync(member, 10_000);

        var r = await Fx.BrandPos.PostAsJsonAsync("/v1/purchases", Fx.PurchaseBody(card, 10.00m, redeem: 501));

        await AssertProblemAsync(r, HttpStatusCode.UnprocessableEntity, "redemption_cap_exceeded", "pointsToRedeem");
        Assert.Equal(0, await Fx.ScalarAsync<long>("SELECT COUNT(*) FROM purchases WHERE member_id = @member", new { member }));
    }

    [Fact]
    public async Task APurchaseWithABlockedCardIsRejected()
    {
        var (member, card) = await Fx.EnrollAsync();
        await ReadAsync(await Fx.BrandPos.PostAsJsonAsync($"/v1/cards/{card}/block", new { reason = "lost" }), HttpStatusCode.OK);

        var r = await Fx.BrandPos.PostAsJsonAsync("/v1/purchases", Fx.PurchaseBody(card, 10.00m));

        await AssertProblemAsync(r, HttpStatusCode.UnprocessableEntity, "card_blocked", "cardNumber");
        Assert.Equal(0, await Fx.ScalarAsync<long>("SELECT COUNT(*) FROM purchases WHERE member_id = @member", new { member }));
    }

    [Fact]
    public async Task APurchaseAtAnotherMerchantsStoreIsRejected()
    {
        var (member, card) = await Fx.EnrollAsync();

        var partnerStore = await Fx.BrandPos.PostAsJsonAsync("/v1/purchases", Fx.PurchaseBody(card, 10.00m, storeId: Fx.PartnerStoreId));
        var otherStore = await Fx.BrandStorePos.PostAsJsonAsync("/v1/purchases", Fx.PurchaseBody(card, 10.00m, storeId: Fx.BrandStore2Id));

        await AssertProblemAsync(partnerStore, HttpStatusCode.Forbidden, "store_not_allowed", "storeId");
        await AssertProblemAsync(otherStore, HttpStatusCode.Forbidden, "store_not_allowed", "storeId");
        Assert.Equal(0, await Fx.ScalarAsync<long>("SELECT COUNT(*) FROM purchases WHERE member_id = @member", new { member }));
    }

    [Fact]
    public async Task APurchaseInAnotherCurrencyIsRejected()
    {
        var (member, card) = await Fx.EnrollAsync();

        var r = await Fx.BrandPos.PostAsJsonAsync("/v1/purchases", Fx.PurchaseBody(card, 10.00m, currency: "EUR"));

        await AssertProblemAsync(r, HttpStatusCode.UnprocessableEntity, "currency_mismatch", "currency");
        Assert.Equal(0, await Fx.ScalarAsync<long>("SELECT COUNT(*) FROM purchases WHERE member_id = @member", new { member }));
    }

    private object LinesBody(string card, decimal total, params (string Sku, int Quantity, decimal Amount)[] lines) => new
    {
        storeId = Fx.BrandStoreId, receiptNumber = Fx.Unique("R"), cardNumber = card, occurredAt = Fx.Clock.Now, currency = "USD",
        total, lines = lines.Select(l => new { sku = l.Sku, quantity = l.Quantity, amount = l.Amount }), pointsToRedeem = 0,
    };

    [Fact]
    public async Task LinesThatDoNotAddUpToTheTotalAreRejected()
    {
        var (_, card) = await Fx.EnrollAsync();

        var r = await Fx.BrandPos.PostAsJsonAsync("/v1/purchases", LinesBody(card, 30.00m, ("A", 1, 10.00m), ("B", 2, 15.00m)));

        var problem = await AssertProblemAsync(r, HttpStatusCode.BadRequest, "validation", "lines");
        Assert.True(problem.GetProperty("errors").TryGetProperty("lines", out _));
    }

    [Theory]
    [InlineData(1, "sku", " ")]
    [InlineData(0, "quantity", "0")]
    [InlineData(2, "amount", "-5.00")]
    [InlineData(1, "category", "65")]
    public async Task ABadLineIsRejectedNamingTheLineAndItsField(int index, string field, string value)
    {
        var (member, card) = await Fx.EnrollAsync();
        (string Sku, string Category, int Quantity, decimal Amount)[] lines = [("A", "food", 1, 10.00m), ("B", "food", 2, 15.00m), ("C", "food", 1, 5.00m)];
        lines[index] = field switch
        {
            "sku" => lines[index] with { Sku = value },
            "quantity" => lines[index] with { Quantity = int.Parse(value) },
            "amount" => lines[index] with { Amount = decimal.Parse(value, System.Globalization.CultureInfo.InvariantCulture) },
            _ => lines[index] with { Category = new string('c', int.Parse(value)) },
        };
        var body = new
        {
            storeId = Fx.BrandStoreId, receiptNumber = Fx.Unique("R"), cardNumber = card, occurredAt = Fx.Clock.Now, currency = "USD",
            total = lines.Sum(l => l.Amount),
            lines = lines.Select(l => new { sku = l.Sku, category = l.Category, quantity = l.Quantity, amount = l.Amount }),
            pointsToRedeem = 0,
        };

        var r = await Fx.BrandPos.PostAsJsonAsync("/v1/purchases", body);

        var problem = await AssertProblemAsync(r, HttpStatusCode.BadRequest, "validation", $"lines[{index}].{field}");
        Assert.Equal([$"lines[{index}].{field}"], problem.GetProperty("errors").EnumerateObject().Select(e => e.Name));
        Assert.Equal(0, await Fx.ScalarAsync<long>("SELECT COUNT(*) FROM purchases WHERE member_id = @member", new { member }));
    }

    [Fact]
    public async Task LineAmountsWithMoreDecimalsThanTheCurrencyAreRejectedEvenWhenTheyAddUp()
    {
        var (member, card) = await Fx.EnrollAsync();

        var r = await Fx.BrandPos.PostAsJsonAsync("/v1/purchases", LinesBody(card, 15.00m, ("A", 1, 10.005m), ("B", 2, 4.995m)));

        var problem = await AssertProblemAsync(r, HttpStatusCode.BadRequest, "validation", "lines[0].amount");
        Assert.Equal(["lines[0].amount", "lines[1].amount"], problem.GetProperty("errors").EnumerateObject().Select(e => e.Name));
        Assert.Equal(0, await Fx.ScalarAsync<long>("SELECT COUNT(*) FROM purchases WHERE member_id = @member", new { member }));
    }

    [Theory]
    [InlineData(-5.00, "total")]
    [InlineData(10.001, "total")]
    public async Task ABadAmountIsRejectedNamingTheField(double total, string field)
    {
        var (member, card) = await Fx.EnrollAsync();

        var r = await Fx.BrandPos.PostAsJsonAsync("/v1/purchases", Fx.PurchaseBody(card, (decimal)total));

        await AssertProblemAsync(r, HttpStatusCode.BadRequest, "validation", field);
        Assert.Equal(0, await Fx.ScalarAsync<long>("SELECT COUNT(*) FROM purchases WHERE member_id = @member", new { member }));
    }

    [Fact]
    public async Task MalformedJsonIsAProblemNotAServerError()
    {
        var content = new StringContent("{\"storeId\": \"not a number\", ", System.Text.Encoding.UTF8, "application/json");

        var r = await Fx.BrandPos.PostAsync("/v1/purchases", content);

        await AssertProblemAsync(r, HttpStatusCode.BadRequest, "malformed_json");
    }

    [Fact]
    public async Task AWrongTypeNamesTheField()
    {
        var content = new StringContent("{\"storeId\": \"x\", \"total\": 1}", System.Text.Encoding.UTF8, "application/json");

        var r = await Fx.BrandPos.PostAsync("/v1/purchases", content);

        await AssertProblemAsync(r, HttpStatusCode.BadRequest, "malformed_json", "storeId");
    }

    [Fact]
    public async Task AMisspeltFieldIsRejectedNotIgnored()
    {
        var content = new StringContent("{\"storeId\": 1, \"pointsToRedem\": 5}", System.Text.Encoding.UTF8, "application/json");

        var r = await Fx.BrandPos.PostAsync("/v1/purchases", content);

        await AssertProblemAsync(r, HttpStatusCode.BadRequest, "malformed_json", "pointsToRedem");
    }

    [Fact]
    public async Task AnOversizedBodyIsRefused()
    {
        var content = new StringContent(new string(' ', 300 * 1024) + "{}", System.Text.Encoding.UTF8, "application/json");

        var r = await Fx.BrandPos.PostAsync("/v1/purchases", content);

        await AssertProblemAsync(r, HttpStatusCode.RequestEntityTooLarge, "too_large", "body");
    }

    [Fact]
    public async Task AnUnknownCardIsRejected()
    {
        var r = await Fx.BrandPos.PostAsJsonAsync("/v1/purchases", Fx.PurchaseBody("NOSUCHCARD1", 10.00m));

        await AssertProblemAsync(r, HttpStatusCode.UnprocessableEntity, "unknown_card", "cardNumber");
    }

    [Fact]
    public async Task PointsEarnedAtAPartnerStoreRecordThePartner()
    {
        var (member, card) = await Fx.EnrollAsync();

        var response = await ReadAsync(await Fx.PartnerPos.PostAsJsonAsync("/v1/purchases", Fx.PurchaseBody(card, 9.99m, storeId: Fx.PartnerStoreId)), HttpStatusCode.Created);

        Assert.Equal(9, response.GetProperty("pointsEarned").GetInt64());
        Assert.Equal(Fx.PartnerId, await Fx.ScalarAsync<long>("SELECT merchant_id FROM purchases WHERE id = @Id",
            new { Id = response.GetProperty("purchaseId").GetInt64() }));
    }
}
