using System.Data.Common;
using LoyaltyApi.Infrastructure;

namespace LoyaltyApi.Features.ProgramSettings;

/// <summary>
/// The program's rules are read on every purchase but change rarely, so each instance keeps them
/// for <see cref="Lifetime"/>. A PUT on this instance takes effect at once; on other instances
/// within that time. Grants already made keep the dates they were given either way.
/// </summary>
public sealed class ProgramCache(TimeProvider clock)
{
    public static readonly TimeSpan Lifetime = TimeSpan.FromSeconds(5);
    private volatile Entry? _entry;

    private sealed record Entry(ProgramRules Rules, DateTimeOffset Until);

    public async Task<ProgramRules> GetAsync(Db db, DbConnection connection, DbTransaction? tx, CancellationToken ct)
    {
        var now = clock.GetUtcNow();
        if (_entry is { } e && now < e.Until && now >= e.Until - Lifetime) return e.Rules;
        var rules = await ProgramEndpoints.LoadAsync(db, connection, tx, ct);
        _entry = new Entry(rules, now + Lifetime);
        return rules;
    }

    public void Invalidate() => _entry = null;
}
