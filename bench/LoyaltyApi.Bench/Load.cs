using System.Diagnostics;
using System.Globalization;
using System.Net.Sockets;
using System.Text;

namespace LoyaltyApi.Bench;

/// <summary>A POS terminal's traffic: quote then purchase (some paying with points), balance look-ups, a few refunds.</summary>
public sealed class Load(Uri baseUrl, string[] keys, int members)
{
    private long _receipt = Stopwatch.GetTimestamp();

    public sealed class Recorder
    {
        private readonly Dictionary<string, List<double>> _latencies = new();
        private readonly Dictionary<string, int> _statuses = new();
        public volatile bool Measuring;

        public void Add(string op, double ms, int status)
        {
            if (!Measuring) return;
            lock (this)
            {
                if (!_latencies.TryGetValue(op, out var list)) _latencies[op] = list = new List<double>(100_000);
                list.Add(ms);
                var key = $"{op} {status}";
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

    /// <summary>One recorded purchase on a till's connection: its status, and its id when created.</summary>
    public (int Status, long PurchaseId) Purchase(TillConnection till, int client, Random rng, Recorder rec)
    {
        var (key, body, idempotencyKey) = NextPurchase(client, rng);
        Timed(till, rec, "quote", "POST", "/v1/purchases/quote", key, null, body);
        var (status, text) = Timed(till, rec, "purchase", "POST", "/v1/purchases", key, idempotencyKey, body);
        return (status, status == 201 ? PurchaseIdOf(text) : 0);
    }

    /// <summary>One request of the closed loop, its latency recorded under <paramref name="op"/>.</summary>
    private static (int Status, string Body) Timed(TillConnection till, Recorder rec, string op, string method, string path, string key, string? idempotencyKey, string? body)
    {
        var t0 = Stopwatch.GetTimestamp();
        till.Send(method, path, key, idempotencyKey, body);
        var response = till.Receive();
        rec.Add(op, Stopwatch.GetElapsedTime(t0).TotalMilliseconds, response.Status);
        return response;
    }

    private (string Key, string Body, string IdempotencyKey) NextPurchase(int client, Random rng)
    {
        var store = client % 8 + 1;
        var receipt = NextReceipt();
        var redeem = rng.NextDouble() < 0.3 ? 100 : 0;
        var body = PurchaseBody(store, rng.NextInt64(1, members + 1), receipt, rng, redeem);
        return (keys[client % 8], body, $"{store}-{receipt}");
    }

    private static long PurchaseIdOf(string text)
    {
        var at = text.IndexOf("\"purchaseId\":", StringComparison.Ordinal);
        var end = at < 0 ? -1 : text.IndexOf(',', at + 13);
        return end > 0 && long.TryParse(text.AsSpan(at + 13, end - at - 13), CultureInfo.InvariantCulture, out var id) ? id : 0;
    }

    /// <summary>A till in the closed loop: each request waits for the one before it.</summary>
    public void TillLoop(int client, int seed, Recorder rec, CancellationToken stop)
    {
        var rng = new Random(seed);
        var key = keys[client % 8];
        var recent = new Queue<long>();
        TillConnection? till = null;
        while (!stop.IsCancellationRequested)
        {
            var r = rng.NextDouble();
            try
            {
                if (till is not { Open: true }) { till?.Dispose(); till = new TillConnection(baseUrl); }
                if (r < 0.80)
                {
                    var (status, id) = Purchase(till, client, rng, rec);
                    if (status == 201 && id > 0) { recent.Enqueue(id); if (recent.Count > 50) recent.Dequeue(); }
                }
                else if (r < 0.95)
                {
                    Timed(till, rec, "balance", "GET", $"/v1/cards/{Seed.CardBase + rng.NextInt64(1, members + 1)}", key, null, null);
                }
                else if (recent.Count > 0)
                {
                    var id = recent.Dequeue();
                    var body = rng.NextDouble() < 0.5
                        ? $"{{\"refundNumber\":\"F{id}\",\"occurredAt\":\"{DateTime.UtcNow:O}\",\"amount\":1.00}}"
                        : $"{{\"refundNumber\":\"F{id}\",\"occurredAt\":\"{DateTime.UtcNow:O}\"}}";
                    Timed(till, rec, "refund", "POST", $"/v1/purchases/{id}/refunds", key, null, body);
                }
            }
            catch (Exception e) when (e is IOException or SocketException or FormatException or ArgumentException)
            {
                rec.Add("transport-error", 0, 0);
                till?.Dispose();
                till = null;
            }
        }
        till?.Dispose();
    }

    public Recorder ClosedLoop(int clients, TimeSpan warmup, TimeSpan duration, Action<bool>? measuring = null)
    {
        var rec = new Recorder();
        using var stop = new CancellationTokenSource();
        var tills = Enumerable.Range(0, clients).Select(i => new Thread(() => TillLoop(i, 1000 + i, rec, stop.Token)) { IsBackground = true }).ToArray();
        foreach (var t in tills) t.Start();
        Thread.Sleep(warmup);
        rec.Measuring = true;
        measuring?.Invoke(true);
        Thread.Sleep(duration);
        rec.Measuring = false;
        measuring?.Invoke(false);
        stop.Cancel();
        foreach (var t in tills) t.Join();
        return rec;
    }

    /// <summary>
    /// Open loop: purchases start on a fixed schedule, and latency counts from the scheduled start (no
    /// coordinated omission). The scheduler sends each purchase on an idle till connection whose thread
    /// is already waiting for the response, or opens another connection when every one is busy. A
    /// purchase that fails or times out is kept with the time it took and status 0.
    /// </summary>
    public Recorder FixedRate(int perSecond, TimeSpan warmup, TimeSpan duration, Action<bool>? measuring = null)
    {
        var rec = new Recorder();
        var rng = new Random(42);
        var idle = new System.Collections.Concurrent.ConcurrentQueue<OpenTill>();
        var all = new List<OpenTill>();
        OpenTill Open()
        {
            var till = new OpenTill(new TillConnection(baseUrl), rec, idle);
            all.Add(till);
            return till;
        }
        for (var i = 0; i < 16; i++) idle.Enqueue(Open());
        var start = Stopwatch.GetTimestamp();
        var total = (int)((warmup + duration).TotalSeconds * perSecond);
        var warmupCount = (int)(warmup.TotalSeconds * perSecond);
        for (var i = 0; i < total; i++)
        {
            var due = start + (long)(i * (double)Stopwatch.Frequency / perSecond);
            long wait;
            // Sleeps overshoot by about 0.1 ms here; the purchase's latency still counts from its due time.
            while ((wait = due - Stopwatch.GetTimestamp()) > 0) Thread.Sleep(Math.Max(1, (int)(wait * 1000 / Stopwatch.Frequency)));
            if (i == warmupCount)
            {
                rec.Measuring = true;
                measuring?.Invoke(true);
            }
            var (key, body, idempotencyKey) = NextPurchase(i, new Random(rng.Next()));
            OpenTill? till;
            while (idle.TryDequeue(out till) && till.Dead) { }
            if (till is null or { Dead: true }) till = Open();
            till.Start(due, key, body, idempotencyKey);
        }
        foreach (var till in all) till.Finish();
        measuring?.Invoke(false);
        return rec;
    }

    /// <summary>The service's own counters (GET /v1/runtime) as "name value" lines.</summary>
    public string RuntimeCounters(string adminKey)
    {
        using var connection = new TillConnection(baseUrl);
        connection.Send("GET", "/v1/runtime", adminKey, null, null);
        var (status, body) = connection.Receive();
        if (status != 200) throw new InvalidOperationException($"GET /v1/runtime answered {status}: {body}");
        using var counters = System.Text.Json.JsonDocument.Parse(body);
        return string.Join('\n', counters.RootElement.EnumerateObject().Select(c => $"{c.Name} {c.Value.GetRawText()}"));
    }

    /// <summary>A connection of the open loop with its own thread, which blocks reading the next response.</summary>
    private sealed class OpenTill
    {
        private readonly TillConnection _connection;
        private readonly Recorder _rec;
        private readonly System.Collections.Concurrent.ConcurrentQueue<OpenTill> _idle;
        private readonly Thread _thread;
        private long _due;
        private int _outstanding;
        private volatile bool _dead;

        public OpenTill(TillConnection connection, Recorder rec, System.Collections.Concurrent.ConcurrentQueue<OpenTill> idle)
        {
            (_connection, _rec, _idle) = (connection, rec, idle);
            _thread = new Thread(Run) { IsBackground = true };
            _thread.Start();
        }

        /// <summary>Its reader has stopped (the service closed the connection, or a read failed): never reuse it.</summary>
        public bool Dead => _dead;

        public void Start(long due, string key, string body, string idempotencyKey)
        {
            Volatile.Write(ref _due, due);
            Interlocked.Increment(ref _outstanding);
            // The reader may have died while this till sat idle; whichever side sees the other first counts the purchase.
            if (_dead)
            {
                Failed();
                return;
            }
            try
            {
                _connection.Send("POST", "/v1/purchases", key, idempotencyKey, body);
            }
            catch (Exception e) when (e is IOException or SocketException or ObjectDisposedException)
            {
                _connection.Dispose(); // the reader's pending read fails and counts the purchase once
            }
        }

        private void Failed()
        {
            if (Interlocked.Exchange(ref _outstanding, 0) > 0)
            {
                _rec.Add("purchase", Stopwatch.GetElapsedTime(Volatile.Read(ref _due)).TotalMilliseconds, 0);
            }
        }

        private void Run()
        {
            try
            {
                while (true)
                {
                    var (status, _) = _connection.Receive();
                    _rec.Add("purchase", Stopwatch.GetElapsedTime(Volatile.Read(ref _due)).TotalMilliseconds, status);
                    Interlocked.Decrement(ref _outstanding);
                    if (!_connection.Open) break;
                    _idle.Enqueue(this);
                }
            }
            catch (Exception e) when (e is IOException or SocketException or ObjectDisposedException or FormatException or ArgumentException)
            {
            }
            _dead = true;
            Failed();
        }

        /// <summary>Waits for the last response (the connection's 30 s read timeout bounds it), then closes the connection.</summary>
        public void Finish()
        {
            while (Volatile.Read(ref _outstanding) > 0 && _thread.IsAlive) Thread.Sleep(5);
            _connection.Dispose();
            _thread.Join();
        }
    }
}
