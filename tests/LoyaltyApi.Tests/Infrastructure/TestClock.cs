namespace LoyaltyApi.Tests.Infrastructure;

/// <summary>A clock the tests move forward to cross activation delays and expiries.</summary>
public sealed class TestClock(DateTimeOffset start) : TimeProvider
{
    private long _ticks = start.UtcTicks;

    public override DateTimeOffset GetUtcNow() => new(Interlocked.Read(ref _ticks), TimeSpan.Zero);

    public DateTimeOffset Now => GetUtcNow();

    public void Advance(TimeSpan by) => Interlocked.Add(ref _ticks, by.Ticks);
}
