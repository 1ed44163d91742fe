using System.Net;
using System.Net.Http.Json;
using System.Text.Json;
using LoyaltyApi.Tests.Infrastructure;
using Xunit;

namespace LoyaltyApi.Tests.Api;

public abstract class IdempotencyRetentionTests(ApiFixture fx) : ApiTests(fx)
{
    private Task<HttpResponseMessage> PurchaseWithKeyAsync(string key, object body)
    {
        var request = new HttpRequestMessage(HttpMethod.Post, "/v1/purchases") { Content = JsonContent.Create(body) };
        request.Headers.Add("Idempotency-Key", key);
        return Fx.BrandPos.SendAsync(request);
    }

    private async Task<JsonElement> PurgeAsync() =>
        await ReadAsync(await Fx.Admin.PostAsync("/v1/admin/idempotency-purges", null), HttpStatusCode.OK);

    private Task<long> KeyRecordsAsync(string key) =>
        Fx.ScalarAsync<long>("SELECT COUNT(*) FROM idempotency_keys WHERE idem_key = @key", new { key });

    [Fact]
    public async Task KeysOlderThanTheRetentionAreForgottenAndARetryIsStillDedupedByItsReceipt()
    {
        var (member, card) = await Fx.EnrollAsync();
        var oldKey = Guid.NewGuid().ToString();
        var oldBody = Fx.PurchaseBody(card, 20.00m);
        var first = await ReadAsync(await PurchaseWithKeyAsync(oldKey, oldBody), HttpStatusCode.Created);
        // Three hours later: the purge deletes a minute at a time, so this one goes in a later step of the same run.
        Fx.Clock.Advance(TimeSpan.FromHours(3));
        var laterKey = Guid.NewGuid().ToString();
        await ReadAsync(await PurchaseWithKeyAsync(laterKey, Fx.PurchaseBody(card, 1.00m)), HttpStatusCode.Created);
        Fx.Clock.Advance(TimeSpan.FromDays(20));
        var youngKey = Guid.NewGuid().ToString();
        await ReadAsync(await PurchaseWithKeyAsync(youngKey, Fx.PurchaseBody(card, 5.00m)), HttpStatusCode.Created);

        // 31 days after the two early purchases, 11 after the last: the default retention is 30 days.
        Fx.Clock.Advance(TimeSpan.FromDays(11));
        var cutoff = Fx.Clock.Now.UtcDateTime.AddDays(-30);
        var due = await Fx.ScalarAsync<long>("SELECT COUNT(*) FROM idempotency_keys WHERE created_at < @cutoff", new { cutoff });
        var purge = await PurgeAsync();

        Assert.True(due >= 2, "both early purchases' key records are older than the retention");
        Assert.Equal(due, purge.GetProperty("recordsDeleted").GetInt64());
        Assert.Equal(cutoff, purge.GetProperty("deletedBefore").GetDateTime());
        Assert.Equal(0, await Fx.ScalarAsync<long>("SELECT COUNT(*) FROM idempotency_keys WHERE created_at < @cutoff", new { cutoff }));
        Assert.Equal(0, await KeyRecordsAsync(oldKey));
        Assert.Equal(0, await KeyRecordsAsync(laterKey));
        Assert.Equal(1, await KeyRecordsAsync(youngKey));
        Assert.Equal(0, (await PurgeAsync()).GetProperty("recordsDeleted").GetInt64());

        // The forgotten key's retry names the same store and receipt: it replays the purchase, counts nothing twice.
        var retry = await PurchaseWithKeyAsync(oldKey, oldBody);
        var replayed = await ReadAsync(retry, HttpStatusCode.Created);
        Assert.True(retry.Headers.Contains("Idempotent-Replayed"));
        Assert.Equal(first.GetRawText(), replayed.GetRawText());
        Assert.Equal(3, await Fx.ScalarAsync<long>("SELECT COUNT(*) FROM purchases WHERE member_id = @member", new { member }));
        Assert.Equal(26, await Fx.ScalarAsync<long>("SELECT SUM(points) FROM ledger_entries WHERE member_id = @member AND entry_type = 'earn'", new { member }));
        // The remembered key still refuses another body.
        await AssertProblemAsync(await PurchaseWithKeyAsync(youngKey, Fx.PurchaseBody(card, 6.00m)),
            HttpStatusCode.Conflict, "idempotency_key_reused", "Idempotency-Key");
    }
}
