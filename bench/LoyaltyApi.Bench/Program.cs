using System.Globalization;
using LoyaltyApi.Bench;

// bench driver: seed | load | rate — see bench/run.sh, which runs the whole benchmark.
CultureInfo.DefaultThreadCurrentCulture = CultureInfo.InvariantCulture;
switch (args.FirstOrDefault())
{
    case "seed":
    {
        var keys = await Seed.RunAsync(args[1], args[2], int.Parse(args[3]), args[4]);
        Console.WriteLine($"seeded {args[3]} members, {keys.Length} pos keys");
        return 0;
    }
    case "load":
    {
        var load = new Load(new Uri(args[1]), File.ReadAllLines(args[2]), int.Parse(args[3]));
        var started = (Wall: System.Diagnostics.Stopwatch.GetTimestamp(), Cpu: Environment.CpuUsage.TotalTime);
        var rec = load.ClosedLoop(int.Parse(args[4]), TimeSpan.FromSeconds(double.Parse(args[5])), TimeSpan.FromSeconds(double.Parse(args[6])), RuntimeSnapshots(load));
        Report(rec, double.Parse(args[6]));
        CountedPurchases(rec.Count("purchase", 201));
        // The driver shares the machine: its own CPU is what the service and the database did not get.
        Console.WriteLine($"driver CPU: {(Environment.CpuUsage.TotalTime - started.Cpu).TotalSeconds / System.Diagnostics.Stopwatch.GetElapsedTime(started.Wall).TotalSeconds:F2} cores busy on average");
        return 0;
    }
    case "rate":
    {
        var load = new Load(new Uri(args[1]), File.ReadAllLines(args[2]), int.Parse(args[3]));
        var rec = load.FixedRate(int.Parse(args[4]), TimeSpan.FromSeconds(double.Parse(args[5])), TimeSpan.FromSeconds(double.Parse(args[6])), RuntimeSnapshots(load));
        Report(rec, double.Parse(args[6]));
        CountedPurchases(rec.Latencies("purchase").Count);
        // Raw latencies, so slices run between pgbench's can be pooled and compared with it.
        if (args.Length > 7) File.AppendAllLines(args[7], rec.Latencies("purchase").Select(ms => ms.ToString("F3", CultureInfo.InvariantCulture)));
        return 0;
    }
    default:
        Console.Error.WriteLine("usage: seed <Postgres|Sqlite> <cs> <members> <keysFile> | load <url> <keysFile> <members> <clients> <warmupS> <durationS> | rate <url> <keysFile> <members> <perSecond> <warmupS> <durationS> [latencyFile]");
        return 2;
}

// With BENCH_RUNTIME_FILE and BENCH_ADMIN_KEY set, the service's counters are read as measuring starts
// (<file>.0) and ends (<file>.1), and <file>.1 ends with the purchases counted in between: closed loop,
// the created ones (each with its quote and share of look-ups and refunds); fixed rate, every one sent.
static Action<bool>? RuntimeSnapshots(Load load) =>
    Environment.GetEnvironmentVariable("BENCH_RUNTIME_FILE") is { } file && Environment.GetEnvironmentVariable("BENCH_ADMIN_KEY") is { } key
        ? starting => File.WriteAllText(file + (starting ? ".0" : ".1"), load.RuntimeCounters(key) + "\n")
        : null;

static void CountedPurchases(int purchases)
{
    if (Environment.GetEnvironmentVariable("BENCH_RUNTIME_FILE") is { } file && File.Exists(file + ".1"))
    {
        File.AppendAllText(file + ".1", $"purchases {purchases}\n");
    }
}

static void Report(Load.Recorder rec, double seconds)
{
    var created = rec.Count("purchase", 201);
    Console.WriteLine($"purchases_per_second={created / seconds:F1}");
    foreach (var op in new[] { "purchase", "quote", "balance", "refund" })
    {
        var (p50, p95, p99, max, n) = rec.Percentiles(op);
        if (n > 0) Console.WriteLine($"{op}: n={n} p50={p50:F2}ms p95={p95:F2}ms p99={p99:F2}ms max={max:F2}ms");
    }
    Console.WriteLine("statuses: " + string.Join(", ", rec.Statuses.OrderBy(k => k.Key).Select(k => $"{k.Key}={k.Value}")));
}
