using System.Collections.Concurrent;
using System.Globalization;
using System.Net;
using System.Net.Http.Json;
using System.Text.Json;
using LoyaltyApi.Features.ProgramSettings;
using LoyaltyApi.Tests.Infrastructure;
using Xunit;
using Xunit.Abstractions;

namespace LoyaltyApi.Tests.Reliability;

/// <summary>
/// A seeded, randomized model test. Workers run concurrently, each owning a few members, and send
/// thousands of operations (enroll, purchase with and without points, refunds, adjustments, retries
/// with the same Idempotency-Key, retries with a changed body, redemptions and refunds that must be
/// refused, retries sent while the first attempt is still in flight), while between rounds the clock
/// moves and the expiry job runs. Workers never share a member, so each round also sends bursts at one
/// member: parallel redemptions that together overspend, parallel refunds that together exceed the
/// purchase; exactly as many must be accepted as fit, in results that one serial order explains.
/// A reference model of the points rules predicts every response's balance; after each round every
/// member's balance and every lot (which proves soonest-expiry-first spending) must match the model,
/// every acknowledged purchase must be stored exactly once with one earn and one redeem entry, and the
/// ledger invariants must hold. A failure names the seed; LOYALTY_MODEL_SEED=&lt;seed&gt; replays it.
/// </summary>
public abstract class LedgerModelTests(ApiFixture fx, ITestOutputHelper output) : ApiTests(fx)
{
    private const int Workers = 6;
    private const int MembersPerWorker = 4;
    private const int Rounds = 8;
    private const int OperationsPerWorkerPerRound = 40;
    private const int ActivationDays = 3;
    private const int LifetimeDays = 20;

    private static readonly ProgramRules Rules = new()
    {
        Currency = "USD", TimeZone = "Europe/Berlin", EarnRateBps = 10_000, PointValueMinor = 1, MaxRedeemShareBps = 5_000,
        ActivationDelayDays = ActivationDays, PointsLifetimeDays = LifetimeDays, ExpiryRounding = "EndOfDay",
    };

    private sealed class MLot
    {
        public required int Seq { get; init; }
        public long Granted { get; init; }
        public long Remaining { get; set; }
        public long Expired { get; set; }
        public long Reversed { get; set; }
        public DateTime AvailableAt { get; init; }
        public DateTime ExpiresAt { get; init; }
    }

    private sealed class MAllocation
    {
        public required MLot Lot { get; init; }
        public required int Seq { get; init; }
        public long Points { get; init; }
        public long Returned { get; set; }
    }

    private sealed class MPurchase
    {
        public long Id { get; init; }
        public long TotalMinor { get; init; }
        public long Earned { get; init; }
        public long Redeemed { get; init; }
        public long Refunded { get; set; }
        public long ReversedTarget { get; set; }
        public long Reversed { get; set; }
        public long Returned { get; set; }
        public MLot? EarnLot { get; init; }
        public List<MAllocation> Allocations { get; } = [];
    }

    private sealed class MMember
    {
        public long Id { get; init; }
        public string Card { get; init; } = "";
        public long Debt { get; set; }
        public List<MLot> Lots { get; } = [];
        public List<MPurchase> Purchases { get; } = [];
        public int NextAllocationSeq { get; set; }
    }

    /// <summary>The reference model: the points rules of PRODUCT.md written a second time, independently of the service.</summary>
    private sealed class Model(DateTime now)
    {
        public DateTime Now { get; } = now;

        public long Available(MMember m) => m.Lots.Where(l => l.AvailableAt <= Now && l.ExpiresAt > Now).Sum(l => l.Remaining) - m.Debt;
        public long Pending(MMember m) => m.Lots.Where(l => l.AvailableAt > Now && l.ExpiresAt > Now).Sum(l => l.Remaining);

        public MLot Grant(MMember m, long points, DateTime availableAt, DateTime expiresAt)
        {
            var pay = expiresAt > Now ? Math.Min(m.Debt, points) : 0;
            m.Debt -= pay;
            var lot = new MLot { Seq = m.Lots.Count, Granted = points, Remaining = points - pay, AvailableAt = availableAt, ExpiresAt = expiresAt };
            m.Lots.Add(lot);
            return lot;
        }

        public List<(MLot Lot, long Points)> Take(MMember m, long points)
        {
            var used = new List<(MLot, long)>();
            foreach (var lot in m.Lots.Where(l => l.AvailableAt <= Now && l.ExpiresAt > Now && l.Remaining > 0).OrderBy(l => l.ExpiresAt).ThenBy(l => l.Seq))
            {
                if (points == 0) break;
                var take = Math.Min(points, lot.Remaining);
                lot.Remaining -= take;
                points -= take;
                used.Add((lot, take));
            }
            Assert.Equal(0, points);
            return used;
        }

        public static long CapPoints(long totalMinor) => totalMinor * Rules.MaxRedeemShareBps / 10_000 / Rules.PointValueMinor;

        public static long Share(long points, long part, long whole) => whole == 0 ? points : points * part / whole;

        public (long Reversed, long Returned) Refund(MMember m, MPurchase p, long amount)
        {
            var after = p.Refunded + amount;
            var reverseTarget = Share(p.Earned, after, p.TotalMinor) - p.ReversedTarget;
            var returnTarget = Share(p.Redeemed, after, p.TotalMinor) - p.Returned;
            long reversed = 0;
            if (reverseTarget > 0 && p.EarnLot is { } lot)
            {
                if (lot.ExpiresAt <= Now && lot.Remaining > 0)
                {
                    lot.Expired += lot.Remaining;
                    lot.Remaining = 0;
                }
                reversed = Math.Min(reverseTarget, Math.Max(0, lot.Granted - lot.Expired - lot.Reversed));
                if (reversed > 0)
                {
                    var fromLot = Math.Min(reversed, lot.Remaining);
                    lot.Remaining -= fromLot;
                    lot.Reversed += reversed;
                    var shortfall = reversed - fromLot;
                    var others = Math.Min(shortfall, Math.Max(0, m.Lots.Where(l => l.AvailableAt <= Now && l.ExpiresAt > Now).Sum(l => l.Remaining)));
                    if (others > 0) Take(m, others);
                    m.Debt += shortfall - others;
                }
            }
            long returned = 0;
            if (returnTarget > 0)
            {
                foreach (var a in p.Allocations.OrderByDescending(a => a.Lot.ExpiresAt).ThenByDescending(a => a.Seq))
                {
                    var give = Math.Min(returnTarget - returned, a.Points - a.Returned);
                    if (give <= 0) continue;
                    Grant(m, give, Now, a.Lot.ExpiresAt);
                    a.Returned += give;
                    returned += give;
                    if (returned == returnTarget) break;
                }
            }
            p.Refunded = after;
            p.ReversedTarget += Math.Max(0, reverseTarget);
            p.Reversed += reversed;
            p.Returned += returned;
            return (reversed, returned);
        }

        public void Expire(MMember m)
        {
            foreach (var lot in m.Lots.Where(l => l.ExpiresAt <= Now && l.Remaining > 0))
            {
                lot.Expired += lot.Remaining;
                lot.Remaining = 0;
            }
        }
    }

    private sealed class Worker(int index, int seed)
    {
        public int Index { get; } = index;
        public Random Rng { get; } = new(seed);
        public List<MMember> Members { get; } = [];
        public int Operations { get; set; }
    }

    [Fact]
    public async Task ThousandsOfRandomOperationsKeepTheLedgerEqualToTheModel()
    {
        var seed = int.TryParse(Environment.GetEnvironmentVariable("LOYALTY_MODEL_SEED"), out var s) ? s : Random.Shared.Next(1, 1_000_000);
        output.WriteLine($"model seed {seed} (replay with LOYALTY_MODEL_SEED={seed})");
        var program = new Dictionary<string, object>
        {
            ["currency"] = "USD", ["timeZone"] = Rules.TimeZone, ["earnRateBps"] = Rules.EarnRateBps, ["pointValueMinor"] = Rules.PointValueMinor,
            ["maxRedeemShareBps"] = Rules.MaxRedeemShareBps, ["activationDelayDays"] = ActivationDays, ["pointsLifetimeDays"] = LifetimeDays,
            ["expiryRounding"] = "EndOfDay", ["welcomeBonusPoints"] = 0,
        };
        (await Fx.Admin.PutAsJsonAsync("/v1/program", program)).EnsureSuccessStatusCode();
        var failures = new ConcurrentQueue<string>();
        var workers = Enumerable.Range(0, Workers).Select(i => new Worker(i, seed * 31 + i)).ToList();
        try
        {
            foreach (var w in workers)
            {
                for (var i = 0; i < MembersPerWorker; i++) w.Members.Add(await EnrollAsync(new Model(Fx.Clock.Now.UtcDateTime), w.Rng));
            }
            var jobRng = new Random(seed);
            for (var round = 0; round < Rounds; round++)
            {
                var model = new Model(Fx.Clock.Now.UtcDateTime);
                await Task.WhenAll(workers.Select(w => Task.Run(async () =>
                {
                    for (var i = 0; i < OperationsPerWorkerPerRound; i++)
                    {
                        try
                        {
                            // The member is this worker's alone during the round, so it can be checked against the model after every step.
                            var m = await StepAsync(model, w);
                            await AssertMemberMatchesModelAsync(model, m, $"seed {seed}, round {round}, worker {w.Index}, op {w.Operations}, member {m.Id}");
                        }
                        catch (Exception e) when (e is not OutOfMemoryException)
                        {
                            failures.Enqueue($"seed {seed}, round {round}, worker {w.Index}, op {w.Operations}: {e.Message}");
                            return;
                        }
                    }
                })));
                Assert.True(failures.IsEmpty, string.Join("\n", failures));
                // Then many requests for one member at once: the races the workers above never create.
                var burstRng = new Random(seed * 17 + round);
                var everyone = workers.SelectMany(w => w.Members).ToList();
                var where = $"seed {seed}, round {round}";
                await ContendedRedemptionsAsync(model, everyone[burstRng.Next(everyone.Count)], burstRng, where);
                await ContendedRefundsAsync(model, everyone[burstRng.Next(everyone.Count)], burstRng, where);
                await AssertMatchesModelAsync(model, workers, seed, round);
                await Fx.AssertLedgerInvariantsAsync();

                // Move the clock (sometimes past activation and expiry) and usually run the job, as production would.
                // When it does not run, the next round works on lots past expiry that still hold points: never
                // spendable, expired first by a refund that reverses them, and not in any balance.
                Fx.Clock.Advance(TimeSpan.FromHours(jobRng.Next(0, 24 * 9)));
                if (jobRng.Next(3) > 0)
                {
                    var run = await Fx.Admin.PostAsync("/v1/admin/points-lifecycle/runs", null);
                    Assert.Equal(HttpStatusCode.OK, run.StatusCode);
                    var later = new Model(Fx.Clock.Now.UtcDateTime);
                    foreach (var m in workers.SelectMany(w => w.Members)) later.Expire(m);
                    await AssertMatchesModelAsync(later, workers, seed, round);
                }
            }
            var total = workers.Sum(w => w.Operations);
            output.WriteLine($"{total} operations on {workers.Sum(w => w.Members.Count)} members in {Rounds} rounds");
            Assert.True(total >= 1500, $"only {total} operations ran");
        }
        finally
        {
            (await Fx.Admin.PutAsJsonAsync("/v1/program", ApiFixture.DefaultProgram)).EnsureSuccessStatusCode();
        }
    }

    private async Task<MMember> EnrollAsync(Model model, Random rng)
    {
        var card = Fx.Unique("M7");
        var r = await Fx.BrandPos.PostAsJsonAsync("/v1/members", new { phone = Fx.UniquePhone(), cardNumber = card });
        var body = await ReadAsync(r, HttpStatusCode.Created);
        var m = new MMember { Id = body.GetProperty("id").GetInt64(), Card = card };
        var points = rng.Next(0, 3) * 500;
        if (points > 0)
        {
            await Fx.AdjustAsync(m.Id, points, "model seed points");
            model.Grant(m, points, model.Now, Rules.ExpiryFor(model.Now));
        }
        return m;
    }

    /// <returns>The member the step touched.</returns>
    private async Task<MMember> StepAsync(Model model, Worker w)
    {
        w.Operations++;
        var m = w.Members[w.Rng.Next(w.Members.Count)];
        var roll = w.Rng.Next(100);
        if (roll < 45) await PurchaseAsync(model, w, m);
        else if (roll < 65) await RefundAsync(model, w, m);
        else if (roll < 75) await AdjustAsync(model, w, m);
        else if (roll < 85) await RetryAsync(model, w, m);
        else if (roll < 93) await RefusedRedemptionAsync(model, w, m);
        else if (roll < 97) await RefusedRefundAsync(model, w, m);
        else
        {
            m = await EnrollAsync(model, w.Rng);
            w.Members.Add(m);
        }
        return m;
    }

    private object Body(MMember m, long totalMinor, long redeem, string receipt) => new
    {
        storeId = Fx.BrandStoreId, receiptNumber = receipt, cardNumber = m.Card, occurredAt = Fx.Clock.Now,
        currency = "USD", total = totalMinor / 100m, pointsToRedeem = redeem,
        lines = new[] { new { sku = "M", category = "model", quantity = 1, amount = totalMinor / 100m } },
    };

    private async Task<HttpResponseMessage> SendAsync(string path, object body, string? key)
    {
        var request = new HttpRequestMessage(HttpMethod.Post, path) { Content = JsonContent.Create(body) };
        if (key is not null) request.Headers.Add("Idempotency-Key", key);
        return await Fx.BrandPos.SendAsync(request);
    }

    private static void AssertBalance(Model model, MMember m, JsonElement balance, string what)
    {
        var expected = (model.Available(m), model.Pending(m));
        var actual = (balance.GetProperty("available").GetInt64(), balance.GetProperty("pending").GetInt64());
        Assert.True(expected == actual, $"{what} for member {m.Id}: expected (available, pending) {expected}, service said {actual}");
    }

    /// <param name="copies">How many identical requests (same key, same body) to send at once: all must get the same 201.</param>
    private async Task<(JsonElement Response, object Body, string Key)> DoPurchaseAsync(Model model, Worker w, MMember m, long totalMinor, long redeem,
        int copies = 1)
    {
        var key = Guid.NewGuid().ToString("N");
        var body = Body(m, totalMinor, redeem, Fx.Unique("MR"));
        var sent = await Task.WhenAll(Enumerable.Range(0, copies).Select(_ => SendAsync("/v1/purchases", body, key)));
        var responses = new List<JsonElement>();
        foreach (var r in sent) responses.Add(await ReadAsync(r, HttpStatusCode.Created));
        foreach (var twin in responses.Skip(1)) Assert.Equal(responses[0].GetRawText(), twin.GetRawText());
        ApplyPurchase(model, m, responses[0], totalMinor, redeem);
        return (responses[0], body, key);
    }

    /// <summary>Replays an accepted purchase on the model and checks what the service answered against it.</summary>
    private static void ApplyPurchase(Model model, MMember m, JsonElement response, long totalMinor, long redeem)
    {
        var allocations = redeem > 0 ? model.Take(m, redeem) : [];
        var earned = (totalMinor - redeem * Rules.PointValueMinor) * Rules.EarnRateBps / (10_000 * 100);
        Assert.Equal(earned, response.GetProperty("pointsEarned").GetInt64());
        Assert.Equal(redeem, response.GetProperty("pointsRedeemed").GetInt64());
        MLot? lot = null;
        if (earned > 0)
        {
            var availableAt = model.Now.AddDays(ActivationDays);
            Assert.Equal(availableAt, response.GetProperty("pointsAvailableAt").GetDateTime());
            lot = model.Grant(m, earned, availableAt, Rules.ExpiryFor(availableAt));
            Assert.Equal(lot.ExpiresAt, response.GetProperty("pointsExpireAt").GetDateTime());
        }
        var p = new MPurchase
        {
            Id = response.GetProperty("purchaseId").GetInt64(), TotalMinor = totalMinor, Earned = earned, Redeemed = redeem, EarnLot = lot,
        };
        foreach (var (usedLot, points) in allocations) p.Allocations.Add(new MAllocation { Lot = usedLot, Points = points, Seq = m.NextAllocationSeq++ });
        m.Purchases.Add(p);
        AssertBalance(model, m, response.GetProperty("balance"), "purchase");
    }

    private async Task PurchaseAsync(Model model, Worker w, MMember m)
    {
        var total = (long)w.Rng.Next(1, 20_000);
        var spendable = Math.Min(model.Available(m), Model.CapPoints(total));
        var redeem = spendable > 0 && w.Rng.Next(3) == 0 ? w.Rng.NextInt64(1, spendable + 1) : 0;
        await DoPurchaseAsync(model, w, m, total, redeem);
    }

    private async Task RetryAsync(Model model, Worker w, MMember m)
    {
        var total = (long)w.Rng.Next(100, 10_000);
        var spendable = Math.Min(model.Available(m), Model.CapPoints(total));
        var redeem = spendable > 0 && w.Rng.Next(2) == 0 ? w.Rng.NextInt64(1, spendable + 1) : 0;
        // Half the time the POS's retry overtakes its first attempt: both are in flight together.
        var (first, body, key) = await DoPurchaseAsync(model, w, m, total, redeem, copies: w.Rng.Next(2) == 0 ? 2 : 1);
        var again = await SendAsync("/v1/purchases", body, key);
        Assert.Equal(first.GetRawText(), (await ReadAsync(again, HttpStatusCode.Created)).GetRawText());
        var changed = await SendAsync("/v1/purchases", Body(m, 12_345, 0, Fx.Unique("MR")), key);
        await AssertProblemAsync(changed, HttpStatusCode.Conflict, "idempotency_key_reused");
    }

    private async Task RefusedRedemptionAsync(Model model, Worker w, MMember m)
    {
        var total = 1_000L;
        var tooMany = Math.Max(model.Available(m), 0) + w.Rng.Next(1, 50);
        var r = await SendAsync("/v1/purchases", Body(m, total, tooMany, Fx.Unique("MX")), null);
        var code = tooMany > Math.Max(0, model.Available(m)) ? "insufficient_points" : "redemption_cap_exceeded";
        await AssertProblemAsync(r, HttpStatusCode.UnprocessableEntity, code, "pointsToRedeem");
    }

    private async Task RefundAsync(Model model, Worker w, MMember m)
    {
        var open = m.Purchases.Where(p => p.Refunded < p.TotalMinor).ToList();
        if (open.Count == 0)
        {
            await PurchaseAsync(model, w, m);
            return;
        }
        var p = open[w.Rng.Next(open.Count)];
        var left = p.TotalMinor - p.Refunded;
        var full = w.Rng.Next(3) == 0;
        var amount = full ? left : w.Rng.NextInt64(1, left + 1);
        object body = full
            ? new { refundNumber = Fx.Unique("MF"), occurredAt = Fx.Clock.Now }
            : new { refundNumber = Fx.Unique("MF"), occurredAt = Fx.Clock.Now, amount = amount / 100m };
        var key = Guid.NewGuid().ToString("N");
        var response = await ReadAsync(await SendAsync($"/v1/purchases/{p.Id}/refunds", body, key), HttpStatusCode.Created);
        var (reversed, returned) = model.Refund(m, p, amount);
        Assert.Equal(reversed, response.GetProperty("pointsReversed").GetInt64());
        Assert.Equal(returned, response.GetProperty("pointsReturned").GetInt64());
        AssertBalance(model, m, response.GetProperty("balance"), "refund");
        if (w.Rng.Next(3) == 0)
        {
            var again = await ReadAsync(await SendAsync($"/v1/purchases/{p.Id}/refunds", body, key), HttpStatusCode.Created);
            Assert.Equal(response.GetRawText(), again.GetRawText());
        }
        if (w.Rng.Next(4) == 0)
        {
            var changed = await SendAsync($"/v1/purchases/{p.Id}/refunds", new { refundNumber = Fx.Unique("MF"), occurredAt = Fx.Clock.Now, amount = 0.01m }, key);
            await AssertProblemAsync(changed, HttpStatusCode.Conflict, "idempotency_key_reused");
        }
    }

    private async Task RefusedRefundAsync(Model model, Worker w, MMember m)
    {
        if (m.Purchases.Count == 0) return;
        var p = m.Purchases[w.Rng.Next(m.Purchases.Count)];
        var left = p.TotalMinor - p.Refunded;
        var r = await SendAsync($"/v1/purchases/{p.Id}/refunds",
            new { refundNumber = Fx.Unique("MZ"), occurredAt = Fx.Clock.Now, amount = (left + w.Rng.Next(1, 500)) / 100m }, null);
        if (left == 0) await AssertProblemAsync(r, HttpStatusCode.UnprocessableEntity, "already_refunded");
        else await AssertProblemAsync(r, HttpStatusCode.UnprocessableEntity, "refund_exceeds_purchase", "amount");
    }

    private async Task AdjustAsync(Model model, Worker w, MMember m)
    {
        var credit = w.Rng.Next(2) == 0 || model.Available(m) <= 0;
        var points = credit ? w.Rng.Next(1, 800) : -w.Rng.NextInt64(1, model.Available(m) + 1);
        var r = await Fx.Admin.PostAsJsonAsync($"/v1/members/{m.Id}/adjustments", new { points, reason = "model" });
        var response = await ReadAsync(r, HttpStatusCode.Created);
        if (points > 0) model.Grant(m, points, model.Now, Rules.ExpiryFor(model.Now));
        else model.Take(m, -points);
        AssertBalance(model, m, response.GetProperty("balance"), "adjustment");
    }

    /// <summary>
    /// Eight purchases for one member at once, each redeeming the same points: exactly as many are
    /// accepted as the balance covers when they are served one after another (each one's earned points
    /// pay off any debt first), the rest are refused, and the balances the accepted ones report are the
    /// steps of one serial order, which the model then replays.
    /// </summary>
    private async Task ContendedRedemptionsAsync(Model model, MMember m, Random rng, string where)
    {
        const int Parallel = 8;
        var available = model.Available(m);
        if (available < 2) return;
        var redeem = rng.NextInt64(Math.Max(1, available / 6), available / 3 + 1); // 3 to 6 of the 8 fit
        var total = 2 * redeem + rng.Next(0, 2_000); // the cap (half the receipt) never refuses these
        var accepted = await AcceptedAsync(
            Enumerable.Range(0, Parallel).Select(_ => SendAsync("/v1/purchases", Body(m, total, redeem, Fx.Unique("MC")), Guid.NewGuid().ToString("N"))),
            r => AssertProblemAsync(r, HttpStatusCode.UnprocessableEntity, "insufficient_points", "pointsToRedeem"));
        // Served one after another, each accepted purchase spends its points and then its earned points pay
        // off debt first (pending or not), which raises what the next one may spend.
        var earned = (total - redeem * Rules.PointValueMinor) * Rules.EarnRateBps / (10_000 * 100);
        var (spendable, debt, fits) = (available, m.Debt, 0);
        while (fits < Parallel && spendable >= redeem)
        {
            var paid = Math.Min(debt, earned);
            (spendable, debt, fits) = (spendable - redeem + paid, debt - paid, fits + 1);
        }
        Assert.True(accepted.Count == fits,
            $"{where}, member {m.Id}: {accepted.Count} of {Parallel} parallel redemptions of {redeem} from {available} points accepted, expected {fits}");
        output.WriteLine($"{where}: {accepted.Count} of {Parallel} parallel redemptions of {redeem} from {available} points accepted");
        // Ids are taken under the member's lock, so they follow the serial order; the balance need not (debt paid
        // off by a purchase's earned points can keep it level or raise it).
        foreach (var response in accepted.OrderBy(a => a.GetProperty("purchaseId").GetInt64()))
        {
            ApplyPurchase(model, m, response, total, redeem);
        }
    }

    /// <summary>
    /// Six partial refunds of one purchase at once, together more than is left of it: exactly as many are
    /// accepted as fit, and what they reversed, returned and left on the balance is what refunding them
    /// one after another gives. Steps that look alike cannot be told apart, so they are compared as a multiset.
    /// </summary>
    private async Task ContendedRefundsAsync(Model model, MMember m, Random rng, string where)
    {
        const int Parallel = 6;
        var open = m.Purchases.Where(p => p.TotalMinor - p.Refunded >= 4).ToList();
        if (open.Count == 0) return;
        var p = open[rng.Next(open.Count)];
        var left = p.TotalMinor - p.Refunded;
        var amount = rng.NextInt64(Math.Max(1, left / Parallel), left / 3 + 1);
        var fits = (int)Math.Min(Parallel, left / amount);
        // The refused ones all come after the accepted ones: nothing is refused while a whole amount is left.
        var fullyRefunded = fits * amount == left;
        var accepted = await AcceptedAsync(
            Enumerable.Range(0, Parallel).Select(_ => SendAsync($"/v1/purchases/{p.Id}/refunds",
                new { refundNumber = Fx.Unique("MG"), occurredAt = Fx.Clock.Now, amount = amount / 100m }, Guid.NewGuid().ToString("N"))),
            r => fullyRefunded
                ? AssertProblemAsync(r, HttpStatusCode.UnprocessableEntity, "already_refunded")
                : AssertProblemAsync(r, HttpStatusCode.UnprocessableEntity, "refund_exceeds_purchase", "amount"));
        Assert.True(accepted.Count == fits,
            $"{where}, purchase {p.Id}: {accepted.Count} of {Parallel} parallel refunds of {amount} from {left} accepted, expected {fits}");
        output.WriteLine($"{where}: {accepted.Count} of {Parallel} parallel refunds of {amount} from {left} accepted");
        var expected = new List<string>();
        for (var i = 0; i < fits; i++)
        {
            var (reversed, returned) = model.Refund(m, p, amount);
            expected.Add($"reversed {reversed}, returned {returned}, balance {model.Available(m)}/{model.Pending(m)}");
        }
        var actual = accepted.Select(a => $"reversed {a.GetProperty("pointsReversed").GetInt64()}, returned {a.GetProperty("pointsReturned").GetInt64()}, " +
            $"balance {a.GetProperty("balance").GetProperty("available").GetInt64()}/{a.GetProperty("balance").GetProperty("pending").GetInt64()}");
        Assert.True(expected.Order().SequenceEqual(actual.Order()),
            $"{where}, purchase {p.Id}: parallel refunds gave [{string.Join("; ", actual)}], serial replay [{string.Join("; ", expected)}]");
    }

    /// <summary>Sends the requests at once and returns the 201 answers; every other answer must pass <paramref name="assertRefused"/>.</summary>
    private static async Task<List<JsonElement>> AcceptedAsync(IEnumerable<Task<HttpResponseMessage>> requests, Func<HttpResponseMessage, Task> assertRefused)
    {
        var accepted = new List<JsonElement>();
        foreach (var r in await Task.WhenAll(requests))
        {
            if (r.StatusCode == HttpStatusCode.Created) accepted.Add(await ReadAsync(r, HttpStatusCode.Created));
            else await assertRefused(r);
        }
        return accepted;
    }

    private sealed class LotRow
    {
        public long RemainingPoints { get; set; }
        public long GrantedPoints { get; set; }
        public long ExpiredPoints { get; set; }
        public long ReversedPoints { get; set; }
        public DateTime AvailableAt { get; set; }
        public DateTime ExpiresAt { get; set; }
    }

    private sealed class AccountRow
    {
        public long Debt { get; set; }
        public long Ledger { get; set; }
    }

    private sealed class PurchaseTotals
    {
        public long Id { get; set; }
        public long RefundedMinor { get; set; }
        public long PointsReversed { get; set; }
        public long PointsReturned { get; set; }
        public long ReversedByRefunds { get; set; }
    }

    /// <summary>
    /// One member against the model: the balance the service shows, the debt, every lot (in creation order,
    /// so FIFO spending shows as the right lots drained) and what each purchase has refunded, reversed and
    /// returned; and the ledger sums to the lots less the debt.
    /// </summary>
    private async Task AssertMemberMatchesModelAsync(Model model, MMember m, string where)
    {
        AssertBalance(model, m, await Fx.BalanceAsync(m.Id), where);
        var account = (await Fx.QueryAsync<AccountRow>("""
            SELECT a.debt_points AS debt, (SELECT COALESCE(SUM(e.points), 0) FROM ledger_entries e WHERE e.member_id = a.member_id) AS ledger
            FROM point_accounts a WHERE a.member_id = @Id
            """, new { m.Id })).Single();
        Assert.True(m.Debt == account.Debt, $"{where}: debt {account.Debt} in the database, {m.Debt} in the model");
        var lots = await Fx.QueryAsync<LotRow>("""
            SELECT remaining_points, granted_points, expired_points, reversed_points, available_at, expires_at
            FROM point_lots WHERE member_id = @Id ORDER BY id
            """, new { m.Id });
        Assert.True(lots.Count == m.Lots.Count, $"{where}: {lots.Count} lots in the database, {m.Lots.Count} in the model");
        for (var i = 0; i < lots.Count; i++)
        {
            var (db, ml) = (lots[i], m.Lots[i]);
            Assert.True(db.GrantedPoints == ml.Granted && db.RemainingPoints == ml.Remaining && db.ExpiredPoints == ml.Expired
                        && db.ReversedPoints == ml.Reversed && db.AvailableAt == ml.AvailableAt && db.ExpiresAt == ml.ExpiresAt,
                $"{where}, lot #{i}: database (granted {db.GrantedPoints}, remaining {db.RemainingPoints}, expired {db.ExpiredPoints}, " +
                $"reversed {db.ReversedPoints}, available {db.AvailableAt:O}, expires {db.ExpiresAt:O}) vs model (granted {ml.Granted}, " +
                $"remaining {ml.Remaining}, expired {ml.Expired}, reversed {ml.Reversed}, available {ml.AvailableAt:O}, expires {ml.ExpiresAt:O})");
        }
        Assert.True(account.Ledger == lots.Sum(l => l.RemainingPoints) - account.Debt,
            $"{where}: ledger sums to {account.Ledger}, lots hold {lots.Sum(l => l.RemainingPoints)} less a debt of {account.Debt}");
        var purchases = (await Fx.QueryAsync<PurchaseTotals>(
            """
            SELECT p.id, p.refunded_minor, p.points_reversed, p.points_returned,
                   (SELECT COALESCE(SUM(r.points_reversed), 0) FROM refunds r WHERE r.purchase_id = p.id) AS reversed_by_refunds
            FROM purchases p WHERE p.member_id = @Id
            """, new { m.Id })).ToDictionary(p => p.Id);
        // Every acknowledged purchase is stored exactly once (ids are unique), and nothing else is stored for the member.
        var acknowledged = m.Purchases.Select(p => p.Id).ToHashSet();
        Assert.True(acknowledged.SetEquals(purchases.Keys),
            $"{where}: {purchases.Count} purchases stored, {acknowledged.Count} acknowledged; stored but not acknowledged: " +
            $"[{string.Join(", ", purchases.Keys.Except(acknowledged))}], acknowledged but not stored: [{string.Join(", ", acknowledged.Except(purchases.Keys))}]");
        foreach (var p in m.Purchases)
        {
            var db = purchases[p.Id];
            // points_reversed is the earned share refunded so far; what a refund could take back from an expired lot is less.
            Assert.True(db.RefundedMinor == p.Refunded && db.PointsReversed == p.ReversedTarget && db.ReversedByRefunds == p.Reversed
                        && db.PointsReturned == p.Returned,
                $"{where}, purchase {p.Id}: database (refunded {db.RefundedMinor}, share reversed {db.PointsReversed}, reversed by refunds " +
                $"{db.ReversedByRefunds}, returned {db.PointsReturned}) vs model (refunded {p.Refunded}, share reversed {p.ReversedTarget}, " +
                $"reversed by refunds {p.Reversed}, returned {p.Returned})");
            Assert.True(db.ReversedByRefunds <= db.PointsReversed && db.PointsReversed <= p.Earned && db.PointsReturned <= p.Redeemed
                        && db.RefundedMinor <= p.TotalMinor, $"{where}, purchase {p.Id}: more refunded, reversed or returned than the purchase had");
        }
    }

    /// <summary>Every member equals the model, and every acknowledged purchase wrote what it earned and redeemed in one ledger entry each.</summary>
    private async Task AssertMatchesModelAsync(Model model, List<Worker> workers, int seed, int round)
    {
        foreach (var m in workers.SelectMany(w => w.Members))
        {
            await AssertMemberMatchesModelAsync(model, m, $"seed {seed}, round {round}, member {m.Id}");
        }

        // Each acknowledged purchase (stored exactly once: checked per member above) earned and redeemed its points in exactly one ledger entry.
        var acknowledged = workers.SelectMany(w => w.Members).SelectMany(m => m.Purchases).ToDictionary(p => p.Id);
        var entries = (await Fx.QueryAsync<LedgerGroup>("""
                SELECT purchase_id AS owner, entry_type, COUNT(*) AS entries, SUM(points) AS points
                FROM ledger_entries
                WHERE refund_id IS NULL AND purchase_id IS NOT NULL AND entry_type IN ('earn', 'redeem')
                GROUP BY purchase_id, entry_type
                """)).Where(e => acknowledged.ContainsKey(e.Owner)).ToLookup(e => (e.Owner, e.EntryType));
        foreach (var p in acknowledged.Values)
        {
            foreach (var (type, points) in new[] { ("earn", p.Earned), ("redeem", -p.Redeemed) })
            {
                var e = entries[(p.Id, type)].SingleOrDefault();
                var (count, sum) = (e?.Entries ?? 0, e?.Points ?? 0);
                Assert.True(count == (points == 0 ? 0 : 1) && sum == points,
                    $"seed {seed}, round {round}, purchase {p.Id}: {count} {type} entries of {sum} points, expected {(points == 0 ? 0 : 1)} of {points}");
            }
        }
    }
}

public sealed class SqliteLedgerModelTests(SqliteApiFixture fx, ITestOutputHelper output) : LedgerModelTests(fx, output), IClassFixture<SqliteApiFixture>;

[Collection(PostgresCollection.Name), Trait("Database", "Postgres")]
public sealed class PostgresLedgerModelTests(PostgresApiFixture fx, ITestOutputHelper output) : LedgerModelTests(fx, output), IClassFixture<PostgresApiFixture>;
