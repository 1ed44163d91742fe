using System.Net;
using System.Net.Http.Json;
using System.Text.Json;
using LoyaltyApi.Tests.Infrastructure;
using Xunit;

namespace LoyaltyApi.Tests.Api;

public abstract class PointsLifecycleTests(ApiFixture fx) : ApiTests(fx)
{
    private async Task SetProgramAsync(object program) =>
        (await Fx.Admin.PutAsJsonAsync("/v1/program", program)).EnsureSuccessStatusCode();

    private static object Program(int lifetimeDays) => new
    {
        currency = "USD", timeZone = "Europe/Berlin", earnRateBps = 10_000, pointValueMinor = 1, maxRedeemShareBps = 5_000,
        activationDelayDays = 14, pointsLifetimeDays = lifetimeDays, expiryRounding = "EndOfDay", welcomeBonusPoints = 0,
    };

    private async Task<JsonElement> RunJobAsync() =>
        await ReadAsync(await Fx.Admin.PostAsync("/v1/admin/points-lifecycle/runs", null), HttpStatusCode.OK);

    [Fact]
    public async Task PendingPointsBecomeAvailableAfterTheActivationDelay()
    {
        var (member, card) = await Fx.EnrollAsync();
        var purchase = await ReadAsync(await Fx.BrandPos.PostAsJsonAsync("/v1/purchases", Fx.PurchaseBody(card, 42.00m)), HttpStatusCode.Created);
        var availableAt = purchase.GetProperty("pointsAvailableAt").GetDateTime();
        Assert.Equal(Fx.Clock.Now.UtcDateTime.AddDays(14), availableAt);

        Fx.Clock.Advance(TimeSpan.FromDays(14) - TimeSpan.FromSeconds(1));
        Assert.Equal(42, (await Fx.BalanceAsync(member)).GetProperty("pending").GetInt64());

        Fx.Clock.Advance(TimeSpan.FromSeconds(1));
        var balance = await Fx.BalanceAsync(member);
        Assert.Equal(42, balance.GetProperty("available").GetInt64());
        Assert.Equal(0, balance.GetProperty("pending").GetInt64());
        // Ripening is read against the clock: no job has run, and the lot's row still says what it said when granted.
        Assert.Equal("active", await Fx.ScalarAsync<string>("SELECT status FROM point_lots WHERE member_id = @member", new { member }));
        Assert.Equal(0, (await RunJobAsync()).GetProperty("lotsExpired").GetInt32());
        Assert.Equal("active", await Fx.ScalarAsync<string>("SELECT status FROM point_lots WHERE member_id = @member", new { member }));
    }

    [Fact]
    public async Task ExpiredPointsAreNeverShownAsAvailableAndTheJobExpiresThemOnce()
    {
        await SetProgramAsync(Program(lifetimeDays: 30));
        try
        {
            var (member, _) = await Fx.EnrollAsync();
            await Fx.AdjustAsync(member, 70);
            var expiresAt = await Fx.ScalarAsync<DateTime>("SELECT expires_at FROM point_lots WHERE member_id = @member", new { member });
            // Rounded up to the end of the day in the program's zone (Berlin, UTC+1 in winter/early spring).
            var local = TimeZoneInfo.ConvertTimeFromUtc(DateTime.SpecifyKind(expiresAt, DateTimeKind.Utc), TimeZoneInfo.FindSystemTimeZoneById("Europe/Berlin"));
            Assert.Equal(TimeSpan.Zero, local.TimeOfDay);
            Assert.True(expiresAt > Fx.Clock.Now.UtcDateTime.AddDays(30));

            var soon = await Fx.BalanceAsync(member);
            Assert.Equal(0, soon.GetProperty("expiringSoon").GetArrayLength()); // 31 days out
            Fx.Clock.Advance(TimeSpan.FromDays(2));
            soon = await Fx.BalanceAsync(member);
            Assert.Equal(70, soon.GetProperty("expiringSoon")[0].GetProperty("points").GetInt64());

            Fx.Clock.Advance(expiresAt - Fx.Clock.Now.UtcDateTime);
            var before = await Fx.BalanceAsync(member);
            Assert.Equal(0, before.GetProperty("available").GetInt64());
            Assert.Equal(70, before.GetProperty("lifetime").GetProperty("expired").GetInt64());

            // Two instances running the job at once expire each lot exactly once.
            var runs = await Task.WhenAll(RunJobAsync(), RunJobAsync());
            Assert.Equal(70, runs.Sum(r => r.GetProperty("pointsExpired").GetInt64()));
            Assert.Equal(-70, await Fx.ScalarAsync<long>("SELECT SUM(points) FROM ledger_entries WHERE member_id = @member AND entry_type = 'expire'", new { member }));
            Assert.Equal(1, await Fx.ScalarAsync<long>("SELECT COUNT(*) FROM ledger_entries WHERE member_id = @member AND entry_type = 'expire'", new { member }));
            await RunJobAsync();
            Assert.Equal(1, await Fx.ScalarAsync<long>("SELECT COUNT(*) FROM ledger_entries WHERE member_id = @member AND entry_type = 'expire'", new { member }));
            var after = await Fx.BalanceAsync(member);
            Assert.Equal(70, after.GetProperty("lifetime").GetProperty("expired").GetInt64());
        }
        finally
        {
            await SetProgramAsync(ApiFixture.DefaultProgram);
        }
    }

    [Fact]
    public async Task SpendingUsesTheLotsThatExpireSoonestFirst()
    {
        var (member, card) = await Fx.EnrollAsync();
        await SetProgramAsync(Program(lifetimeDays: 300));
        try
        {
            await Fx.AdjustAsync(member, 100, "long-lived");
            await SetProgramAsync(Program(lifetimeDays: 60));
            await Fx.AdjustAsync(member, 100, "short-lived");
        }
        finally
        {
            await SetProgramAsync(ApiFixture.DefaultProgram);
        }
        var lots = await Fx.QueryAsync<LotRow>("SELECT id, expires_at, remaining_points FROM point_lots WHERE member_id = @member ORDER BY id", new { member });
        Assert.True(lots[1].ExpiresAt < lots[0].ExpiresAt, "the second grant kept its own, shorter expiry");

        var purchase = await ReadAsync(await Fx.BrandPos.PostAsJsonAsync("/v1/purchases", Fx.PurchaseBody(card, 10.00m, redeem: 150)), HttpStatusCode.Created);

        var after = await Fx.QueryAsync<LotRow>("SELECT id, expires_at, remaining_points FROM point_lots WHERE member_id = @member ORDER BY id", new { member });
        Assert.Equal(50, after[0].RemainingPoints);
        Assert.Equal(0, after[1].RemainingPoints);
        var allocations = await Fx.QueryAsync<AllocationRow>("SELECT lot_id, points FROM redemption_allocations WHERE purchase_id = @Id ORDER BY id",
            new { Id = purchase.GetProperty("purchaseId").GetInt64() });
        Assert.Equal([(lots[1].Id, 100L), (lots[0].Id, 50L)], allocations.Select(a => (a.LotId, a.Points)).ToArray());
    }

    [Fact]
    public async Task AnAdjustmentIsAuditedWithWhoWhenAndWhy()
    {
        var (member, _) = await Fx.EnrollAsync();
        await Fx.AdjustAsync(member, 250, "apology for a late delivery");

        var take = await Fx.Admin.PostAsJsonAsync($"/v1/members/{member}/adjustments", new { points = -100, reason = "duplicate credit" });
        var tooMuch = await Fx.Admin.PostAsJsonAsync($"/v1/members/{member}/adjustments", new { points = -151, reason = "typo" });
        var noReason = await Fx.Admin.PostAsJsonAsync($"/v1/members/{member}/adjustments", new { points = 5, reason = "" });

        await ReadAsync(take, HttpStatusCode.Created);
        await AssertProblemAsync(tooMuch, HttpStatusCode.UnprocessableEntity, "insufficient_points", "points");
        await AssertProblemAsync(noReason, HttpStatusCode.BadRequest, "validation", "reason");
        var history = await ReadAsync(await Fx.Admin.GetAsync($"/v1/members/{member}/transactions"), HttpStatusCode.OK);
        var items = history.GetProperty("items");
        Assert.Equal(2, items.GetArrayLength());
        Assert.Equal(-100, items[0].GetProperty("points").GetInt64());
        Assert.Equal("duplicate credit", items[0].GetProperty("reason").GetString());
        Assert.Equal("bootstrap-admin", items[0].GetProperty("actor").GetString());
        Assert.Equal(Fx.Clock.Now.UtcDateTime, items[0].GetProperty("createdAt").GetDateTime());
        Assert.Equal(150, (await Fx.BalanceAsync(member)).GetProperty("available").GetInt64());
    }

    public sealed class LotRow
    {
        public long Id { get; set; }
        public DateTime ExpiresAt { get; set; }
        public long RemainingPoints { get; set; }
    }

    public sealed class AllocationRow
    {
        public long LotId { get; set; }
        public long Points { get; set; }
    }
}
