using System.Diagnostics;
using System.Globalization;
using System.Net;
using System.Text;

namespace LoyaltyApi.Bench;

/// <summary>A POS terminal's traffic: quote then purchase (some paying with points), balance look-ups, a few refunds.</summary>
public sealed class Load(Uri baseUrl, string[] keys, int members)
{
    private readonly HttpClient _http = new(new SocketsHttpHandler
    {
        MaxConnectionsPerServer = 512,
        PooledConnectionIdleTimeout = TimeSpan.FromMinutes(5),
        UseProxy = false,
    }) { BaseAddress = baseUrl, Timeout = TimeSpan.FromSeconds(30) };

    private long _receipt = Stopwatch.GetTimestamp();

    public sealed class Recorder
    {
        private readonly Dictionary<string, List<double>> _latencies = new();
        private readonly Dictionary<string, int> _statuses = new();
        public volatile bool Measuring;

        public void Add(string op, double ms, HttpStatusCode status)
        {
            if (!Measuring) return;
            lock (this)
            {
                if (!_latencies.TryGetValue(op, out var list)) _latencies[op] = list = new List<double>(100_000);
                list.Add(ms);
                var key = $"{op} {(int)status}";
                _statuses[key] = _statuses.GetValueOrDefault(key) + 1;
            }
        }

        public IReadOnlyList<double> Latencies(string op) => _latencies.TryGetValue(op, out var list) ? list : [];

        public int Count(string op, int status) => _statuses.GetValueOrDefault($"{op} {status}");
        public IReadOnlyDictionary<string, int> Statuses => _statuses;

        public (double P50, double P95, double P99, double Max, int N) Percentiles(string op)
        {
            if (!_latencies.TryGetValue(op, out var list) || list.Count == 0) return (0, 0, 0, 0, 0);
            var sorted = list.ToArray();
            Array.Sort(sorted);
            double P(double q) => sorted[Math.Min(sorted.Length - 1, (int)Math.Ceiling(q * sorted.Length) - 1)];
            return (P(0.50), P(0.95), P(0.99), sorted[^1], sorted.Length);
        }
    }

    private string NextReceipt() => "R" + Interlocked.Increment(ref _receipt).ToString(CultureInfo.InvariantCulture);

    private static string PurchaseBody(int store, long member, string receipt, Random rng, long redeem)
    {
        var lines = rng.Next(1, 6);
        var sb = new StringBuilder(512);
        long total = 0;
        var amounts = new long[lines];
        for (var i = 0; i < lines; i++) { amounts[i] = rng.Next(100, 4000); total += amounts[i]; }
        sb.Append("{\"storeId\":").Append(store)
          .Append(",\"receiptNumber\":\"").Append(receipt)
          .Append("\",\"cardNumber\":\"").Append(Seed.CardBase + member)
          .Append("\",\"occurredAt\":\"").Append(DateTime.UtcNow.ToString("O", CultureInfo.InvariantCulture))
          .Append("\",\"currency\":\"USD\",\"total\":").Append(Major(total))
          .Append(",\"pointsToRedeem\":").Append(redeem)
          .Append(",\"lines\":[");
        for (var i = 0; i < lines; i++)
        {
            if (i > 0) sb.Append(',');
            sb.Append("{\"sku\":\"SKU-").Append(rng.Next(1, 500)).Append("\",\"category\":\"cat-").Append(rng.Next(1, 20))
              .Append("\",\"quantity\":").Append(rng.Next(1, 4)).Append(",\"amount\":").Append(Major(amounts[i])).Append('}');
        }
        return sb.Append("]}").ToString();
    }

    private static string Major(long minor) => (minor / 100m).ToString("0.00", CultureInfo.InvariantCulture);

    private async Task<(HttpStatusCode Status, string Body)> SendAsync(HttpMethod method, string path, string key, string? body, string? idempotencyKey = null)
    {
        using var request = new HttpRequestMessage(method, path);
        request.Headers.Add("X-Api-Key", key);
        if (idempotencyKey is not null) request.Headers.Add("Idempotency-Key", idempotencyKey);
        if (body is not null) request.Content = new StringContent(body, Encoding.UTF8, "application/json");
        using var response = await _http.SendAsync(request);
        return (response.StatusCode, await response.Content.ReadAsStringAsync());
    }

    /// <summary>One recorded purchase: returns its status (and id when created).</summary>
    public async Task<(HttpStatusCode Status, long PurchaseId)> PurchaseAsync(int client, Random rng, Recorder rec, bool quoteFirst, long? scheduledAt = null)
    {
        var store = client % 8 + 1;
        var key = keys[client % 8];
        var member = rng.NextInt64(1, members + 1);
        var receipt = NextReceipt();
        var redeem = rng.NextDouble() < 0.3 ? 100 : 0;
        var body = PurchaseBody(store, member, receipt, rng, redeem);
        if (quoteFirst)
        {
            var q0 = Stopwatch.GetTimestamp();
            var (qs, _) = await SendAsync(HttpMethod.Post, "/v1/purchases/quote", key, body);
            rec.Add("quote", Stopwatch.GetElapsedTime(q0).TotalMilliseconds, qs);
        }
        var t0 = scheduledAt ?? Stopwatch.GetTimestamp();
        var (status, text) = await SendAsync(HttpMethod.Post, "/v1/purchases", key, body, $"{store}-{receipt}");
        rec.Add("purchase", Stopwatch.GetElapsedTime(t0).TotalMilliseconds, status);
        if (status != HttpStatusCode.Created) return (status, 0);
        var at = text.IndexOf("\"purchaseId\":", StringComparison.Ordinal) + 13;
        var end = text.IndexOf(',', at);
        return (status, long.Parse(text.AsSpan(at, end - at), CultureInfo.InvariantCulture));
    }

    public async Task ClientLoopAsync(int client, int seed, Recorder rec, CancellationToken stop)
    {
        var rng = new Random(seed);
        var key = keys[client % 8];
        var recent = new Queue<long>();
        while (!stop.IsCancellationRequested)
        {
            var r = rng.NextDouble();
            try
            {
                if (r < 0.80)
                {
                    var (status, id) = await PurchaseAsync(client, rng, rec, quoteFirst: true);
                    if (status == HttpStatusCode.Created) { recent.Enqueue(id); if (recent.Count > 50) recent.Dequeue(); }
                }
                else if (r < 0.95)
                {
                    var t0 = Stopwatch.GetTimestamp();
                    var (s, _) = await SendAsync(HttpMethod.Get, $"/v1/cards/{Seed.CardBase + rng.NextInt64(1, members + 1)}", key, null);
                    rec.Add("balance", Stopwatch.GetElapsedTime(t0).TotalMilliseconds, s);
                }
                else if (recent.Count > 0)
                {
                    var id = recent.Dequeue();
                    var body = rng.NextDouble() < 0.5
                        ? $"{{\"refundNumber\":\"F{id}\",\"occurredAt\":\"{DateTime.UtcNow:O}\",\"amount\":1.00}}"
                        : $"{{\"refundNumber\":\"F{id}\",\"occurredAt\":\"{DateTime.UtcNow:O}\"}}";
                    var t0 = Stopwatch.GetTimestamp();
                    var (s, _) = await SendAsync(HttpMethod.Post, $"/v1/purchases/{id}/refunds", key, body);
                    rec.Add("refund", Stopwatch.GetElapsedTime(t0).TotalMilliseconds, s);
                }
            }
            catch (HttpRequestException)
            {
                rec.Add("transport-error", 0, 0);
            }
            catch (TaskCanceledException) when (!stop.IsCancellationRequested)
            {
                rec.Add("timeout", 0, 0);
            }
        }
    }

    public async Task<Recorder> ClosedLoopAsync(int clients, TimeSpan warmup, TimeSpan duration)
    {
        var rec = new Recorder();
        using var stop = new CancellationTokenSource();
        var tasks = Enumerable.Range(0, clients).Select(i => Task.Run(() => ClientLoopAsync(i, 1000 + i, rec, stop.Token))).ToArray();
        await Task.Delay(warmup);
        rec.Measuring = true;
        await Task.Delay(duration);
        rec.Measuring = false;
        stop.Cancel();
        try { await Task.WhenAll(tasks); } catch (OperationCanceledException) { }
        return rec;
    }

    /// <summary>Open loop: purchases start on a fixed schedule, and latency counts from the scheduled start (no coordinated omission).</summary>
    public async Task<Recorder> FixedRateAsync(int perSecond, TimeSpan warmup, TimeSpan duration)
    {
        var rec = new Recorder();
        var rng = new Random(42);
        var running = new List<Task>();
        var start = Stopwatch.GetTimestamp();
        var total = (int)((warmup + duration).TotalSeconds * perSecond);
        var warmupCount = (int)(warmup.TotalSeconds * perSecond);
        for (var i = 0; i < total; i++)
        {
            var due = start + (long)(i * (double)Stopwatch.Frequency / perSecond);
            var wait = due - Stopwatch.GetTimestamp();
            if (wait > 0) await Task.Delay(TimeSpan.FromSeconds((double)wait / Stopwatch.Frequency));
            if (i == warmupCount) rec.Measuring = true;
            var client = i;
            var local = new Random(rng.Next());
            running.Add(Task.Run(() => PurchaseAsync(client, local, rec, quoteFirst: false, scheduledAt: due)));
        }
        await Task.WhenAll(running);
        return rec;
    }
}
