using System.Collections.Concurrent;
using System.Diagnostics;
using System.Globalization;
using System.Net;
using System.Text;
using System.Text.Json;
using Dapper;
using LoyaltyApi.Infrastructure;
using LoyaltyApi.Tests.Infrastructure;
using Npgsql;
using Xunit;
using Xunit.Abstractions;

namespace LoyaltyApi.Tests.Reliability;

/// <summary>
/// Fault injection on PostgreSQL: point-of-sale clients record purchases concurrently, and refund some of
/// the purchases they were acknowledged, each retrying the same request (same Idempotency-Key, same body)
/// on 5xx, 408, 429, timeouts and transport errors, while the database connections are killed several
/// times and the server is restarted crash-style once. Afterwards every acknowledged purchase and refund
/// must exist exactly once, nothing unacknowledged may exist, and the ledger must hold exactly what the
/// acknowledged responses said — no more, no less.
/// </summary>
[Collection(PostgresCollection.Name), Trait("Database", "Postgres")]
public sealed class PostgresFaultTests(PostgresApiFixture fx, ITestOutputHelper output) : ApiTests(fx), IClassFixture<PostgresApiFixture>
{
    public const string RestartVariable = "LOYALTY_TEST_PG_RESTART";
    public const string SeedVariable = "LOYALTY_TEST_SEED";

    private const int Members = 20;
    private const long InitialPoints = 5_000;
    private const int Clients = 8;
    private const int PurchasesPerClient = 60;
    private const int MaxAttempts = 60;
    private static readonly TimeSpan MaxRetryTime = TimeSpan.FromSeconds(30);
    private static readonly TimeSpan AttemptTimeout = TimeSpan.FromSeconds(10);
    /// <summary>One purchase in this many starts with an impatient till that gives up after a few milliseconds, so some commits lose their answer.</summary>
    private const int ImpatientOneIn = 5;
    /// <summary>No client starts a new purchase after this; requests already started finish their retries.</summary>
    private static readonly TimeSpan LoadWindow = TimeSpan.FromSeconds(25);

    /// <summary>Faults fire when this share of the planned purchases has completed: kills, and one restart.</summary>
    private static readonly (double Progress, bool Restart)[] FaultPlan =
        [(0.08, false), (0.20, false), (0.35, false), (0.45, true), (0.60, false), (0.75, false), (0.88, false)];

    private sealed record Ack(int Client, string Key, long StoreId, string Receipt, long MemberId, long PurchaseId,
        long PointsEarned, long PointsRedeemed, bool Replayed, int Attempts);

    private sealed record Refused(int Client, string Key, long StoreId, string Receipt, long MemberId);

    private sealed record RefundAck(int Client, string Key, string RefundNumber, long PurchaseId, long MemberId, long AmountMinor,
        long RefundId, long PointsReversed, long PointsReturned, bool Replayed);

    /// <summary>One in this many purchases is followed by a refund of one of the client's acknowledged purchases.</summary>
    private const int RefundOneIn = 4;

    private sealed class Stats
    {
        public int Attempts;
        public int Retries;
        public int Timeouts;
        public int TransportErrors;
        public int RequestsThatRetried;
        public int KillRounds;
        public int BackendsTerminated;
        public int Restarts;
        public long RestartMilliseconds;
        public readonly ConcurrentDictionary<int, int> RetriedStatuses = new();
        public readonly ConcurrentDictionary<string, int> Exceptions = new();
        public void Count<TKey>(ConcurrentDictionary<TKey, int> d, TKey key) where TKey : notnull => d.AddOrUpdate(key, 1, (_, n) => n + 1);
    }

    public sealed class PurchaseRow
    {
        public long Id { get; set; }
        public long MemberId { get; set; }
        public long StoreId { get; set; }
        public string ReceiptNumber { get; set; } = "";
        public long PointsEarned { get; set; }
        public long PointsRedeemed { get; set; }
        public long RefundedMinor { get; set; }
        public string LinesJson { get; set; } = "";
    }

    public sealed class KeyRow
    {
        public string IdemKey { get; set; } = "";
        public int StatusCode { get; set; }
        public string ResponseJson { get; set; } = "";
        public long? PurchaseId { get; set; }
    }

    public sealed class RefundRow
    {
        public long Id { get; set; }
        public long PurchaseId { get; set; }
        public long MemberId { get; set; }
        public string RefundNumber { get; set; } = "";
        public long AmountMinor { get; set; }
        public long PointsReversed { get; set; }
        public long PointsReturned { get; set; }
    }

    [Fact]
    public async Task KilledConnectionsAndAServerRestartLoseNoAcknowledgedPurchaseAndCountNoneTwice()
    {
        var restartCommand = Environment.GetEnvironmentVariable(RestartVariable);
        if (string.IsNullOrWhiteSpace(restartCommand))
        {
            Assert.Fail($"{RestartVariable} is not set, so the fault test cannot restart PostgreSQL. ./test.sh sets it when it starts its " +
                        $"private cluster; when {PostgresTestDatabase.EnvironmentVariable} comes from outside, set {RestartVariable} to a shell " +
                        "command that restarts that server crash-style, e.g. 'pg_ctl -D <datadir> -m immediate -w restart'.");
        }
        DapperSetup.Configure();
        var seed = int.TryParse(Environment.GetEnvironmentVariable(SeedVariable), NumberStyles.Integer, CultureInfo.InvariantCulture, out var s)
            ? s : Random.Shared.Next();
        output.WriteLine($"seed {seed} (set {SeedVariable} to send the same purchases again)");
        var total = Stopwatch.StartNew();

        var members = new List<(long Id, string Card)>();
        for (var i = 0; i < Members; i++)
        {
            var m = await Fx.EnrollAsync();
            await Fx.AdjustAsync(m.MemberId, InitialPoints, "fault test float");
            members.Add(m);
        }

        var stats = new Stats();
        var acks = new ConcurrentBag<Ack>();
        var refused = new ConcurrentBag<Refused>();
        var refundAcks = new ConcurrentBag<RefundAck>();
        var unexpected = new ConcurrentBag<string>();
        var gaveUp = new ConcurrentBag<string>();
        var completed = 0;
        var timeline = new ConcurrentQueue<string>();
        var load = Stopwatch.StartNew();
        using var loadDone = new CancellationTokenSource();

        async Task ClientAsync(int client)
        {
            // The purchases come from one generator and the timing (patience, backoff, pauses) from another,
            // so a seed always produces the same purchases whatever the faults did to the retries.
            var rng = new Random(unchecked(seed + 7919 * (client + 1)));
            var timing = new Random(unchecked(seed - 104_729 * (client + 1)));
            var refundable = new List<(long PurchaseId, long MemberId, long TotalMinor)>();
            for (var i = 0; i < PurchasesPerClient && load.Elapsed < LoadWindow; i++)
            {
                var (memberId, card) = members[rng.Next(members.Count)];
                var amount = rng.Next(500, 10_000) / 100m;
                var redeem = rng.Next(3) == 0 ? rng.Next(1, 21) : 0;
                var storeId = rng.Next(2) == 0 ? Fx.BrandStoreId : Fx.BrandStore2Id;
                var receipt = $"FT-{seed:x8}-{client:D2}-{i:D4}";
                var key = $"fault-{seed:x8}-{client:D2}-{i:D4}-{rng.Next():x8}";
                var json = JsonSerializer.Serialize(Fx.PurchaseBody(card, amount, redeem, receipt, storeId), Json.Web);
                var outcome = await SendWithRetriesAsync(timing, rng.Next(ImpatientOneIn) == 0, "/v1/purchases", key, json, stats);
                switch (outcome)
                {
                    case { Status: 201 } ok:
                    {
                        var body = JsonDocument.Parse(ok.Body).RootElement;
                        acks.Add(new Ack(client, key, storeId, receipt, memberId, body.GetProperty("purchaseId").GetInt64(),
                            body.GetProperty("pointsEarned").GetInt64(), body.GetProperty("pointsRedeemed").GetInt64(), ok.Replayed, ok.Attempts));
                        if (body.GetProperty("memberId").GetInt64() != memberId || body.GetProperty("receiptNumber").GetString() != receipt)
                        {
                            unexpected.Add($"{key}: acknowledged for another member or receipt: {ok.Body}");
                        }
                        if (body.GetProperty("pointsRedeemed").GetInt64() != redeem)
                        {
                            unexpected.Add($"{key}: asked to redeem {redeem}, acknowledged {ok.Body}");
                        }
                        refundable.Add((body.GetProperty("purchaseId").GetInt64(), memberId, (long)(amount * 100)));
                        break;
                    }
                    case { Status: 422 } no when ProblemCode(no.Body) == "insufficient_points":
                        refused.Add(new Refused(client, key, storeId, receipt, memberId));
                        break;
                    case { GaveUp: true } g:
                        gaveUp.Add($"{key} (receipt {receipt}) after {g.Attempts} attempts: {g.Body}");
                        break;
                    case var other:
                        unexpected.Add($"{key} (receipt {receipt}) answered {other.Status}: {other.Body}");
                        break;
                }
                Interlocked.Increment(ref completed);
                // Now and then the till refunds one of its own acknowledged purchases (once each, so none is refused).
                if (refundable.Count > 0 && rng.Next(RefundOneIn) == 0)
                {
                    var pick = rng.Next(refundable.Count);
                    var (purchaseId, refundMember, totalMinor) = refundable[pick];
                    refundable.RemoveAt(pick);
                    var refundMinor = rng.Next(3) == 0 ? totalMinor : rng.NextInt64(1, totalMinor);
                    var refundNumber = $"FR-{seed:x8}-{client:D2}-{i:D4}";
                    var refundKey = $"fault-refund-{seed:x8}-{client:D2}-{i:D4}-{rng.Next():x8}";
                    var refundJson = JsonSerializer.Serialize(refundMinor == totalMinor
                        ? (object)new { refundNumber, occurredAt = Fx.Clock.Now }
                        : new { refundNumber, occurredAt = Fx.Clock.Now, amount = refundMinor / 100m }, Json.Web);
                    var answer = await SendWithRetriesAsync(timing, rng.Next(ImpatientOneIn) == 0, $"/v1/purchases/{purchaseId}/refunds", refundKey, refundJson, stats);
                    if (answer is { Status: 201 })
                    {
                        var body = JsonDocument.Parse(answer.Body).RootElement;
                        refundAcks.Add(new RefundAck(client, refundKey, refundNumber, purchaseId, refundMember, refundMinor,
                            body.GetProperty("refundId").GetInt64(), body.GetProperty("pointsReversed").GetInt64(),
                            body.GetProperty("pointsReturned").GetInt64(), answer.Replayed));
                        if (body.GetProperty("purchaseId").GetInt64() != purchaseId || body.GetProperty("refundNumber").GetString() != refundNumber)
                        {
                            unexpected.Add($"{refundKey}: acknowledged for another purchase or refund number: {answer.Body}");
                        }
                    }
                    else if (answer.GaveUp) gaveUp.Add($"{refundKey} (refund {refundNumber}) after {answer.Attempts} attempts: {answer.Body}");
                    else unexpected.Add($"{refundKey} (refund {refundNumber} of purchase {purchaseId}) answered {answer.Status}: {answer.Body}");
                }
                await Task.Delay(timing.Next(2, 25));
            }
        }

        const int planned = Clients * PurchasesPerClient;
        var faults = Task.Run(async () =>
        {
            foreach (var (progress, restart) in FaultPlan)
            {
                while (Volatile.Read(ref completed) < progress * planned)
                {
                    if (loadDone.IsCancellationRequested) return;
                    await Task.Delay(5);
                }
                var before = stats.BackendsTerminated;
                var at = load.Elapsed.TotalSeconds;
                if (restart) await RestartServerAsync(restartCommand!, stats);
                else await KillConnectionsAsync(stats, rounds: 3);
                timeline.Enqueue(restart
                    ? $"{at:F1}s restart ({stats.RestartMilliseconds} ms)"
                    : $"{at:F1}s kill {stats.BackendsTerminated - before}");
            }
        });

        var clients = Enumerable.Range(0, Clients).Select(c => Task.Run(() => ClientAsync(c))).ToArray();
        await Task.WhenAll(clients);
        load.Stop();
        await loadDone.CancelAsync();
        await faults;

        // The server may still be coming back; pooled connections from before the faults are dead.
        await WaitForServerAsync(TimeSpan.FromSeconds(30));
        NpgsqlConnection.ClearAllPools();

        var acked = acks.ToList();
        var ackedRefunds = refundAcks.ToList();
        var serviceErrors = Fx.Logs.Lines.Where(l => l.StartsWith("Error ", StringComparison.Ordinal) || l.StartsWith("Critical ", StringComparison.Ordinal))
            .Select(l => l.Split(':', 2)[0] + ": " + FirstLine(l.Split(':', 2).ElementAtOrDefault(1) ?? "")).GroupBy(l => l).Select(g => $"{g.Count()} x {g.Key}").ToList();
        output.WriteLine($"load {load.Elapsed.TotalSeconds:F1} s, total {total.Elapsed.TotalSeconds:F1} s; {Clients} clients, {Members} members, planned {planned}, completed {completed}");
        output.WriteLine($"acknowledged {acked.Count} (of which {acked.Count(a => a.PointsRedeemed > 0)} redeemed, {acked.Count(a => a.Replayed)} were replays of a commit whose answer was lost), refused insufficient_points {refused.Count}");
        output.WriteLine($"refunds acknowledged {ackedRefunds.Count} (of which {ackedRefunds.Count(r => r.Replayed)} were replays of a commit whose answer was lost)");
        output.WriteLine($"attempts {stats.Attempts}, retries {stats.Retries} over {stats.RequestsThatRetried} requests, max attempts for one request {(acked.Count == 0 ? 0 : acked.Max(a => a.Attempts))}");
        output.WriteLine($"retried statuses: {string.Join(", ", stats.RetriedStatuses.OrderBy(p => p.Key).Select(p => $"{p.Key} x {p.Value}"))}; " +
                         $"timeouts {stats.Timeouts}; transport errors {stats.TransportErrors} ({string.Join(", ", stats.Exceptions.Select(p => $"{p.Key} x {p.Value}"))})");
        output.WriteLine($"faults: {stats.KillRounds} kill rounds terminated {stats.BackendsTerminated} backends; {stats.Restarts} restart(s), {stats.RestartMilliseconds} ms; at {string.Join(", ", timeline)}");
        output.WriteLine($"service error log lines: {(serviceErrors.Count == 0 ? "none" : string.Join("; ", serviceErrors))}");

        Assert.True(unexpected.IsEmpty, $"seed {seed}: unexpected answers:\n{string.Join("\n", unexpected.Take(20))}");
        Assert.True(gaveUp.IsEmpty, $"seed {seed}: requests still unanswered after {MaxAttempts} attempts / {MaxRetryTime.TotalSeconds} s (outcome unknown):\n{string.Join("\n", gaveUp.Take(20))}");
        // The faults really happened and were seen, so this cannot pass vacuously.
        Assert.Equal(1, stats.Restarts);
        Assert.True(stats.KillRounds >= 3 && stats.BackendsTerminated > 0, $"seed {seed}: only {stats.KillRounds} kill rounds terminating {stats.BackendsTerminated} backends");
        Assert.True(stats.Retries > 0 && stats.RequestsThatRetried > 0, $"seed {seed}: no client saw a failure, so no fault was exercised");
        Assert.True(acked.Count >= planned / 2, $"seed {seed}: only {acked.Count} of {planned} purchases were acknowledged");
        Assert.True(ackedRefunds.Count >= acked.Count / (2 * RefundOneIn), $"seed {seed}: only {ackedRefunds.Count} refunds were acknowledged");

        await AssertPurchasesMatchAsync(seed, acked, refused.ToList(), ackedRefunds);
        await AssertRefundsMatchAsync(seed, ackedRefunds);
        await AssertLedgerMatchesAsync(seed, acked, ackedRefunds, members.Select(m => m.Id).ToList());
    }

    private async Task AssertPurchasesMatchAsync(int seed, List<Ack> acked, List<Refused> refused, List<RefundAck> refunds)
    {
        var rows = await Fx.QueryAsync<PurchaseRow>("SELECT id, member_id, store_id, receipt_number, points_earned, points_redeemed, refunded_minor, lines_json FROM purchases");
        var byReceipt = rows.ToLookup(r => (r.StoreId, r.ReceiptNumber));
        var byId = rows.ToLookup(r => r.Id);

        Assert.Equal(acked.Count, acked.Select(a => a.PurchaseId).Distinct().Count());
        var refundedByPurchase = refunds.ToLookup(r => r.PurchaseId, r => r.AmountMinor);
        foreach (var a in acked)
        {
            var found = byReceipt[(a.StoreId, a.Receipt)].ToList();
            Assert.True(found.Count == 1, $"seed {seed}: acknowledged receipt {a.StoreId}/{a.Receipt} (key {a.Key}) is stored {found.Count} times");
            var p = found[0];
            Assert.True(p.Id == a.PurchaseId, $"seed {seed}: receipt {a.Receipt} was acknowledged as purchase {a.PurchaseId} but is stored as {p.Id}");
            Assert.True(byId[a.PurchaseId].Count() == 1, $"seed {seed}: purchase {a.PurchaseId} is stored {byId[a.PurchaseId].Count()} times");
            Assert.True(p.MemberId == a.MemberId && p.PointsEarned == a.PointsEarned && p.PointsRedeemed == a.PointsRedeemed,
                $"seed {seed}: purchase {p.Id} stored member {p.MemberId} earned {p.PointsEarned} redeemed {p.PointsRedeemed}; " +
                $"acknowledged member {a.MemberId} earned {a.PointsEarned} redeemed {a.PointsRedeemed}");
            var refunded = refundedByPurchase[a.PurchaseId].Sum();
            Assert.True(p.RefundedMinor == refunded, $"seed {seed}: purchase {p.Id} shows {p.RefundedMinor} refunded, acknowledged refunds total {refunded}");
        }
        foreach (var r in refused)
        {
            Assert.True(!byReceipt.Contains((r.StoreId, r.Receipt)), $"seed {seed}: refused receipt {r.Receipt} (key {r.Key}) was recorded anyway");
        }
        var ackedReceipts = acked.Select(a => (a.StoreId, a.Receipt)).ToHashSet();
        var stray = rows.Where(r => !ackedReceipts.Contains((r.StoreId, r.ReceiptNumber))).Select(r => $"{r.Id} {r.StoreId}/{r.ReceiptNumber}").ToList();
        Assert.True(stray.Count == 0, $"seed {seed}: purchases recorded that no client saw acknowledged: {string.Join(", ", stray.Take(20))}");
        Assert.Equal(acked.Count, rows.Count);

        Assert.All(rows, r =>
        {
            var lines = JsonDocument.Parse(r.LinesJson).RootElement.GetArrayLength();
            Assert.True(lines == 1, $"seed {seed}: purchase {r.Id} keeps {lines} lines; the request sent 1");
        });

        // Every acknowledged key is stored once and replays the acknowledged purchase (the record holds the
        // request's hash, and the replay is that purchase's stored response); a refused request stored no key.
        var keys = await Fx.QueryAsync<KeyRow>("""
            SELECT k.idem_key, k.status_code, k.response_json, p.id AS purchase_id
            FROM idempotency_keys k LEFT JOIN purchases p ON p.request_hash = k.request_hash
            WHERE k.operation = 'purchase'
            """);
        Assert.Equal(acked.Count, keys.Count);
        var refundKeys = (await Fx.QueryAsync<string>("SELECT idem_key FROM idempotency_keys WHERE operation LIKE 'refund:%'")).ToHashSet();
        Assert.True(refundKeys.SetEquals(refunds.Select(r => r.Key)),
            $"seed {seed}: {refundKeys.Count} refund keys stored for {refunds.Count} acknowledged refunds");
        var keyed = keys.ToDictionary(k => k.IdemKey);
        foreach (var a in acked)
        {
            Assert.True(keyed.TryGetValue(a.Key, out var k), $"seed {seed}: acknowledged key {a.Key} is not stored");
            Assert.Equal(201, k!.StatusCode);
            Assert.Equal(a.PurchaseId, k.PurchaseId);
            Assert.Equal("", k.ResponseJson);
        }
    }

    /// <summary>Every acknowledged refund is stored once, as acknowledged; nothing else is.</summary>
    private async Task AssertRefundsMatchAsync(int seed, List<RefundAck> acked)
    {
        var rows = await Fx.QueryAsync<RefundRow>("""
            SELECT id, purchase_id, member_id, refund_number, amount_minor, points_reversed, points_returned FROM refunds
            """);
        Assert.Equal(acked.Count, acked.Select(a => a.RefundId).Distinct().Count());
        var byNumber = rows.ToLookup(r => r.RefundNumber);
        foreach (var a in acked)
        {
            var found = byNumber[a.RefundNumber].ToList();
            Assert.True(found.Count == 1, $"seed {seed}: acknowledged refund {a.RefundNumber} (key {a.Key}) is stored {found.Count} times");
            var r = found[0];
            Assert.True(r.Id == a.RefundId && r.PurchaseId == a.PurchaseId && r.MemberId == a.MemberId && r.AmountMinor == a.AmountMinor
                        && r.PointsReversed == a.PointsReversed && r.PointsReturned == a.PointsReturned,
                $"seed {seed}: refund {a.RefundNumber} stored as {r.Id} of purchase {r.PurchaseId}, {r.AmountMinor} minor, reversed {r.PointsReversed}, " +
                $"returned {r.PointsReturned}; acknowledged {a.RefundId} of purchase {a.PurchaseId}, {a.AmountMinor}, {a.PointsReversed}, {a.PointsReturned}");
        }
        var stray = rows.Select(r => r.RefundNumber).Except(acked.Select(a => a.RefundNumber)).ToList();
        Assert.True(stray.Count == 0, $"seed {seed}: refunds recorded that no client saw acknowledged: {string.Join(", ", stray.Take(20))}");
    }

    private async Task AssertLedgerMatchesAsync(int seed, List<Ack> acked, List<RefundAck> refunds, List<long> memberIds)
    {
        var byMember = (await Fx.QueryAsync<LedgerGroup>("""
            SELECT member_id AS owner, entry_type, COUNT(*) AS entries, SUM(points) AS points
            FROM ledger_entries GROUP BY member_id, entry_type
            """)).ToLookup(g => g.Owner);
        foreach (var member in memberIds)
        {
            var mine = acked.Where(a => a.MemberId == member).ToList();
            var groups = byMember[member].ToDictionary(g => g.EntryType);
            long Points(string type) => groups.TryGetValue(type, out var g) ? g.Points : 0;
            long Entries(string type) => groups.TryGetValue(type, out var g) ? g.Entries : 0;
            var earned = mine.Sum(a => a.PointsEarned);
            var redeemed = mine.Sum(a => a.PointsRedeemed);
            Assert.True(Points("earn") == earned, $"seed {seed}: member {member} ledger earned {Points("earn")}, acknowledged {earned}");
            Assert.True(Points("redeem") == -redeemed, $"seed {seed}: member {member} ledger redeemed {-Points("redeem")}, acknowledged {redeemed}");
            Assert.True(Entries("earn") == mine.Count(a => a.PointsEarned > 0), $"seed {seed}: member {member} has {Entries("earn")} earn entries for {mine.Count(a => a.PointsEarned > 0)} earning purchases");
            Assert.True(Entries("redeem") == mine.Count(a => a.PointsRedeemed > 0), $"seed {seed}: member {member} has {Entries("redeem")} redeem entries for {mine.Count(a => a.PointsRedeemed > 0)} redeeming purchases");
            Assert.True(Points("adjustment") == InitialPoints && Entries("adjustment") == 1, $"seed {seed}: member {member} adjustments {Entries("adjustment")} entries, {Points("adjustment")} points");
            var myRefunds = refunds.Where(r => r.MemberId == member).ToList();
            var reversed = myRefunds.Sum(r => r.PointsReversed);
            var returned = myRefunds.Sum(r => r.PointsReturned);
            Assert.True(Points("earn_reversal") == -reversed && Entries("earn_reversal") == myRefunds.Count(r => r.PointsReversed > 0),
                $"seed {seed}: member {member} ledger reversed {-Points("earn_reversal")} in {Entries("earn_reversal")} entries, acknowledged {reversed}");
            Assert.True(Points("redeem_return") == returned, $"seed {seed}: member {member} ledger returned {Points("redeem_return")}, acknowledged {returned}");
            var others = groups.Keys.Except(["earn", "redeem", "adjustment", "earn_reversal", "redeem_return"]).ToList();
            Assert.True(others.Count == 0, $"seed {seed}: member {member} has unexpected ledger entries: {string.Join(", ", others)}");
        }

        var byPurchase = (await Fx.QueryAsync<LedgerGroup>("""
            SELECT purchase_id AS owner, entry_type, COUNT(*) AS entries, SUM(points) AS points
            FROM ledger_entries WHERE purchase_id IS NOT NULL AND refund_id IS NULL GROUP BY purchase_id, entry_type
            """)).ToLookup(g => g.Owner);
        var ackedIds = acked.Select(a => a.PurchaseId).ToHashSet();
        var orphans = byPurchase.Select(g => g.Key).Where(id => !ackedIds.Contains(id)).ToList();
        Assert.True(orphans.Count == 0, $"seed {seed}: ledger entries for purchases nobody acknowledged: {string.Join(", ", orphans.Take(20))}");
        foreach (var a in acked)
        {
            var expected = new List<string>();
            if (a.PointsEarned > 0) expected.Add($"earn 1 {a.PointsEarned}");
            if (a.PointsRedeemed > 0) expected.Add($"redeem 1 {-a.PointsRedeemed}");
            var actual = byPurchase[a.PurchaseId].Select(g => $"{g.EntryType} {g.Entries} {g.Points}").Order(StringComparer.Ordinal).ToList();
            Assert.True(expected.SequenceEqual(actual), $"seed {seed}: purchase {a.PurchaseId} ledger [{string.Join("; ", actual)}], expected [{string.Join("; ", expected)}]");
        }

        var byRefund = (await Fx.QueryAsync<LedgerGroup>("""
            SELECT refund_id AS owner, entry_type, COUNT(*) AS entries, SUM(points) AS points
            FROM ledger_entries WHERE refund_id IS NOT NULL GROUP BY refund_id, entry_type
            """)).ToLookup(g => g.Owner);
        var refundIds = refunds.Select(r => r.RefundId).ToHashSet();
        var strayEntries = byRefund.Select(g => g.Key).Where(id => !refundIds.Contains(id)).ToList();
        Assert.True(strayEntries.Count == 0, $"seed {seed}: ledger entries for refunds nobody acknowledged: {string.Join(", ", strayEntries.Take(20))}");
        foreach (var r in refunds)
        {
            var groups = byRefund[r.RefundId].ToDictionary(g => g.EntryType);
            var reversed = groups.TryGetValue("earn_reversal", out var rev) ? -rev.Points : 0;
            var returned = groups.TryGetValue("redeem_return", out var ret) ? ret.Points : 0;
            Assert.True(reversed == r.PointsReversed && returned == r.PointsReturned && groups.Keys.All(k => k is "earn_reversal" or "redeem_return"),
                $"seed {seed}: refund {r.RefundId} ledger reversed {reversed}, returned {returned} ({string.Join(", ", groups.Keys)}); " +
                $"acknowledged {r.PointsReversed}, {r.PointsReturned}");
        }
    }

    private sealed record Outcome(int Status, string Body, bool Replayed, int Attempts, bool GaveUp = false);

    private async Task<Outcome> SendWithRetriesAsync(Random rng, bool impatient, string path, string key, string json, Stats stats)
    {
        var started = Stopwatch.StartNew();
        var last = "";
        for (var attempt = 1; ; attempt++)
        {
            if (attempt > MaxAttempts || started.Elapsed > MaxRetryTime) return new Outcome(0, last, false, attempt - 1, GaveUp: true);
            Interlocked.Increment(ref stats.Attempts);
            if (attempt == 2) Interlocked.Increment(ref stats.RequestsThatRetried);
            if (attempt >= 2) Interlocked.Increment(ref stats.Retries);
            var patience = attempt == 1 && impatient ? TimeSpan.FromMilliseconds(rng.Next(2, 60)) : AttemptTimeout;
            using var timeout = new CancellationTokenSource(patience);
            try
            {
                using var request = new HttpRequestMessage(HttpMethod.Post, path) { Content = new StringContent(json, Encoding.UTF8, "application/json") };
                request.Headers.Add(Idempotency.Header, key);
                using var response = await Fx.BrandPos.SendAsync(request, timeout.Token);
                var body = await response.Content.ReadAsStringAsync(timeout.Token);
                var status = (int)response.StatusCode;
                if (status == 201)
                {
                    return new Outcome(status, body, response.Headers.Contains(Idempotency.ReplayedHeader), attempt);
                }
                if (status >= 500 || status is 408 or 429)
                {
                    stats.Count(stats.RetriedStatuses, status);
                    last = $"{status} {body}";
                }
                else
                {
                    return new Outcome(status, body, false, attempt);
                }
            }
            catch (OperationCanceledException) when (timeout.IsCancellationRequested)
            {
                Interlocked.Increment(ref stats.Timeouts);
                last = $"timeout after {patience.TotalMilliseconds} ms";
            }
            catch (Exception e) when (e is not OperationCanceledException)
            {
                // HttpRequestException, or whatever the in-process server let escape: to a till it is a dropped connection.
                Interlocked.Increment(ref stats.TransportErrors);
                stats.Count(stats.Exceptions, e.GetType().Name);
                last = $"{e.GetType().Name}: {e.Message}";
            }
            await Task.Delay(Math.Min(20 * attempt, 250) + rng.Next(0, 25));
        }
    }

    private static string? ProblemCode(string body)
    {
        try
        {
            return JsonDocument.Parse(body).RootElement.TryGetProperty("code", out var c) ? c.GetString() : null;
        }
        catch (JsonException)
        {
            return null;
        }
    }

    private static string FirstLine(string s)
    {
        var i = s.IndexOfAny(['\r', '\n']);
        return (i < 0 ? s : s[..i]).Trim();
    }

    /// <summary>A connection of its own (unpooled) that ends every other session on the test database, a few times in a row.</summary>
    private async Task KillConnectionsAsync(Stats stats, int rounds)
    {
        var cs = new NpgsqlConnectionStringBuilder(Fx.Database.ConnectionString) { Pooling = false }.ToString();
        for (var round = 0; round < rounds; round++)
        {
            try
            {
                await using var killer = new NpgsqlConnection(cs);
                await killer.OpenAsync();
                var killed = (await killer.QueryAsync<bool>("""
                    SELECT pg_terminate_backend(pid) FROM pg_stat_activity
                    WHERE datname = current_database() AND pid <> pg_backend_pid()
                    """)).Count(k => k);
                Interlocked.Add(ref stats.BackendsTerminated, killed);
                Interlocked.Increment(ref stats.KillRounds);
            }
            catch (NpgsqlException e)
            {
                output.WriteLine($"kill round failed ({e.GetType().Name}: {e.Message}); the server may be restarting");
            }
            await Task.Delay(15);
        }
    }

    private async Task RestartServerAsync(string command, Stats stats)
    {
        var watch = Stopwatch.StartNew();
        using var process = new Process
        {
            StartInfo = new ProcessStartInfo("/bin/bash")
            {
                ArgumentList = { "-c", command },
                RedirectStandardOutput = true,
                RedirectStandardError = true,
                UseShellExecute = false,
            },
        };
        process.Start();
        var stdout = process.StandardOutput.ReadToEndAsync();
        var stderr = process.StandardError.ReadToEndAsync();
        using var limit = new CancellationTokenSource(TimeSpan.FromSeconds(90));
        await process.WaitForExitAsync(limit.Token);
        var text = (await stdout + await stderr).Trim();
        Assert.True(process.ExitCode == 0, $"{RestartVariable} ({command}) exited with {process.ExitCode}: {text}");
        stats.RestartMilliseconds = watch.ElapsedMilliseconds;
        Interlocked.Increment(ref stats.Restarts);
        output.WriteLine($"restarted PostgreSQL in {watch.ElapsedMilliseconds} ms: {text.ReplaceLineEndings(" ")}");
    }

    private async Task WaitForServerAsync(TimeSpan limit)
    {
        var cs = new NpgsqlConnectionStringBuilder(Fx.Database.ConnectionString) { Pooling = false, Timeout = 5 }.ToString();
        var watch = Stopwatch.StartNew();
        while (true)
        {
            try
            {
                await using var c = new NpgsqlConnection(cs);
                await c.OpenAsync();
                await c.ExecuteScalarAsync<int>("SELECT 1");
                return;
            }
            catch (NpgsqlException) when (watch.Elapsed < limit)
            {
                await Task.Delay(100);
            }
        }
    }
}
