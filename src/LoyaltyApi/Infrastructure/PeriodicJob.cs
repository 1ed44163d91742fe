namespace LoyaltyApi.Infrastructure;

/// <summary>
/// A background job that runs at start and then every <see cref="IntervalSeconds"/>. A failed run is logged
/// by its exception's type only (a message may carry data) and the next run goes ahead: these jobs are safe
/// to repeat, and an instance that stopped running them would fail quietly.
/// </summary>
public abstract partial class PeriodicJob(ILogger logger) : BackgroundService
{
    /// <summary>Seconds between runs; 0 or less turns the loop off.</summary>
    protected abstract int IntervalSeconds { get; }

    protected abstract Task RunOnceAsync(CancellationToken ct);

    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        var interval = IntervalSeconds;
        if (interval <= 0) return;
        using var timer = new PeriodicTimer(TimeSpan.FromSeconds(interval));
        do
        {
            try
            {
                await RunOnceAsync(stoppingToken);
            }
            catch (Exception e) when (e is not OperationCanceledException)
            {
                LogFailed(logger, GetType().Name, e.GetType().Name);
            }
        }
        while (await timer.WaitForNextTickAsync(stoppingToken));
    }

    [LoggerMessage(Level = LogLevel.Warning, Message = "{Job} run failed with {ExceptionType}; it will run again")]
    private static partial void LogFailed(ILogger logger, string job, string exceptionType);
}
