using System.Data.Common;
using Dapper;
using LoyaltyApi.Infrastructure;

namespace LoyaltyApi.Features.Points;

public static class LedgerEntryTypes
{
    public const string Earn = "earn";
    public const string Redeem = "redeem";
    public const string EarnReversal = "earn_reversal";
    public const string RedeemReturn = "redeem_return";
    public const string Expire = "expire";
    public const string Adjustment = "adjustment";
    public const string WelcomeBonus = "welcome_bonus";
}

public static class LotSources
{
    public const string Purchase = "purchase";
    public const string WelcomeBonus = "welcome_bonus";
    public const string Adjustment = "adjustment";
    public const string RedeemReturn = "redeem_return";
}

/// <summary>
/// What a lot's row says of it. Whether a live lot is pending or available is not stored: it follows from
/// available_at and the clock, so a lot ripens on time with no job and no write.
/// </summary>
public static class LotStatuses
{
    /// <summary>Neither reversed nor expired: pending before available_at, spendable from then until expires_at.</summary>
    public const string Active = "active";
    public const string Reversed = "reversed";
    public const string Expired = "expired";
}

/// <summary>A grant of points: pending until <see cref="AvailableAt"/>, spendable until <see cref="ExpiresAt"/>.</summary>
public sealed class PointLot
{
    public long Id { get; set; }
    public long MemberId { get; set; }
    public string Source { get; set; } = "";
    public long? PurchaseId { get; set; }
    public long GrantedPoints { get; set; }
    public long RemainingPoints { get; set; }
    public long ExpiredPoints { get; set; }
    public long ReversedPoints { get; set; }
    public DateTime AvailableAt { get; set; }
    public DateTime ExpiresAt { get; set; }
    public string Status { get; set; } = "";

    public bool IsAvailable(DateTime now) => AvailableAt <= now && ExpiresAt > now;
    public bool IsPending(DateTime now) => AvailableAt > now && ExpiresAt > now;
}

public sealed record LotAllocation(PointLot Lot, long Points);

/// <summary>
/// A member's points inside one transaction. Opening it takes the member's row lock (FOR UPDATE;
/// an update-lock hint on SQL Server; SQLite's writer lock), so all writes for one member are serialized and
/// parallel redemptions cannot overspend. Reads of the balance never count expired lots as
/// available, whether or not the expiry job has run.
/// </summary>
public sealed class PointsAccount
{
    // A row lock, not an UPDATE: no new row version per purchase for readers to prune, and less WAL.
    private const string LockSql = """
        SELECT debt_points
        FROM point_accounts
        WHERE member_id = @MemberId
        FOR UPDATE
        """;

    // For a POS that only knows the card: the card and the lock on its holder's account in one statement
    // (the card's row is read, not locked). The lots that follow are the holder's whatever the card's status
    // by then: the caller decides on the status this statement read, so a card blocked while the lock was
    // awaited cannot leave a purchase with the status from before and the lots from after.
    private const string LockByCardSql = """
        SELECT cards.id AS card_id, cards.member_id, cards.status, point_accounts.debt_points
        FROM point_accounts
        JOIN cards ON cards.member_id = point_accounts.member_id
        WHERE cards.card_number = @CardNumber
        FOR UPDATE OF point_accounts
        """;

    private const string LiveLotsByCardSql = """
        SELECT id, member_id, source, purchase_id, granted_points, remaining_points, expired_points, reversed_points,
               available_at, expires_at, status
        FROM point_lots
        WHERE member_id = (SELECT member_id FROM cards WHERE card_number = @CardNumber)
          AND remaining_points > 0 AND expires_at > @Now
        ORDER BY expires_at, id
        """;

    private const string LiveLotsSql = """
        SELECT id, member_id, source, purchase_id, granted_points, remaining_points, expired_points, reversed_points,
               available_at, expires_at, status
        FROM point_lots
        WHERE member_id = @MemberId AND remaining_points > 0 AND expires_at > @Now
        ORDER BY expires_at, id
        """;

    // What a purchase that spends nothing needs of the live lots: their totals, not the lots. A member who
    // buys daily holds a year of lots; shipping and sorting them all on every such purchase grows with history.
    private const string LiveTotals = """
        SELECT COALESCE(SUM(CASE WHEN available_at <= @Now THEN remaining_points ELSE 0 END), 0) AS available_points,
               COALESCE(SUM(CASE WHEN available_at > @Now THEN remaining_points ELSE 0 END), 0) AS pending_points
        FROM point_lots
        """;

    private const string LiveBalanceSql = LiveTotals + "\n" + """
        WHERE member_id = @MemberId AND remaining_points > 0 AND expires_at > @Now
        """;

    private const string LiveBalanceByCardSql = LiveTotals + "\n" + """
        WHERE member_id = (SELECT member_id FROM cards WHERE card_number = @CardNumber)
          AND remaining_points > 0 AND expires_at > @Now
        """;

    private sealed class LiveBalance
    {
        public long AvailablePoints { get; set; }
        public long PendingPoints { get; set; }
    }

    private const string LotByIdSql = """
        SELECT id, member_id, source, purchase_id, granted_points, remaining_points, expired_points, reversed_points,
               available_at, expires_at, status
        FROM point_lots
        WHERE id = @Id AND member_id = @MemberId
        """;

    private const string InsertLotSql = """
        INSERT INTO point_lots (member_id, source, purchase_id, granted_points, remaining_points, expired_points,
            reversed_points, available_at, expires_at, status, created_at)
        VALUES (@MemberId, @Source, @PurchaseId, @GrantedPoints, @RemainingPoints, 0, 0, @AvailableAt, @ExpiresAt, @Status, @Now)
        """;

    private const string InsertLotWithIdSql = """
        INSERT INTO point_lots (id, member_id, source, purchase_id, granted_points, remaining_points, expired_points,
            reversed_points, available_at, expires_at, status, created_at)
        VALUES (@Id, @MemberId, @Source, @PurchaseId, @GrantedPoints, @RemainingPoints, 0, 0, @AvailableAt, @ExpiresAt, @Status, @Now)
        """;

    private const string UpdateLotSql = """
        UPDATE point_lots
        SET remaining_points = @RemainingPoints, reversed_points = @ReversedPoints, expired_points = @ExpiredPoints, status = @Status
        WHERE id = @Id AND member_id = @MemberId
        """;

    private const string InsertEntrySql = """
        INSERT INTO ledger_entries (member_id, entry_type, points, lot_id, purchase_id, refund_id, reason, actor, created_at)
        VALUES (@MemberId, @EntryType, @Points, @LotId, @PurchaseId, @RefundId, @Reason, @Actor, @Now)
        """;

    // Runs right after the lot's insert in the same batch: under the member's lock the member's
    // newest lot is the one just inserted, so its id needs no round trip of its own.
    private const string InsertEntryForNewLotSql = """
        INSERT INTO ledger_entries (member_id, entry_type, points, lot_id, purchase_id, refund_id, reason, actor, created_at)
        SELECT @MemberId, @EntryType, @Points, MAX(id), @PurchaseId, @RefundId, @Reason, @Actor, @Now
        FROM point_lots
        WHERE member_id = @MemberId
        """;

    private const string UpdateDebtSql = """
        UPDATE point_accounts
        SET debt_points = @Debt
        WHERE member_id = @MemberId
        """;

    private readonly Db _db;
    private readonly DbConnection _connection;
    private readonly DbTransaction _tx;
    private readonly CancellationToken _ct;
    private readonly string _actor;
    private readonly HashSet<PointLot> _changedLots = [];
    private readonly List<PointLot> _newLots = [];
    private readonly List<Entry> _entries = [];
    private long _debtAtOpen;
    // Live points that were summed at open rather than loaded: counted in the balance, never spent.
    private long _unloadedAvailable;
    private long _unloadedPending;
    private bool _lotsLoaded = true;

    /// <summary>A ledger entry waiting to be written; <see cref="Lot"/> resolves the id of a lot not yet inserted.</summary>
    private sealed record Entry(string EntryType, long Points, PointLot? Lot, long? PurchaseId, long? RefundId, string? Reason);

    private PointsAccount(Db db, DbConnection connection, DbTransaction tx, long memberId, DateTime now, string actor, CancellationToken ct)
    {
        _db = db;
        _connection = connection;
        _tx = tx;
        MemberId = memberId;
        Now = now;
        _actor = actor;
        _ct = ct;
    }

    public long MemberId { get; }
    public DateTime Now { get; }
    public long Debt { get; private set; }
    public List<PointLot> Lots { get; private set; } = [];

    /// <summary>Points that can be spent now: available lots less any debt. May be negative.</summary>
    public long Available => _unloadedAvailable + Lots.Where(l => l.IsAvailable(Now)).Sum(l => l.RemainingPoints) - Debt;
    public long Pending => _unloadedPending + Lots.Where(l => l.IsPending(Now)).Sum(l => l.RemainingPoints);

    private void RequireLots()
    {
        if (!_lotsLoaded) throw new InvalidOperationException("This account was opened with its balance only; spending or reversing needs its lots.");
    }

    /// <summary>Locks the member's points and loads the live lots; null when the member has no account.</summary>
    public static async Task<PointsAccount?> OpenAsync(Db db, DbConnection connection, DbTransaction tx, long memberId,
        DateTime now, string actor, CancellationToken ct)
    {
        var debt = await connection.ExecuteScalarAsync<long?>(new CommandDefinition(db.Sql(LockSql),
            new { MemberId = memberId }, tx, cancellationToken: ct));
        if (debt is null) return null;
        var lots = await connection.QueryAsync<PointLot>(new CommandDefinition(db.Sql(LiveLotsSql),
            new { MemberId = memberId, Now = now }, tx, cancellationToken: ct));
        return Opened(db, connection, tx, memberId, now, actor, new OpenedRead(debt, lots.ToList()), ct);
    }

    /// <summary>
    /// Adds the lock and the lot read to a batch, so a caller can fetch them in the same round trip
    /// as its own reads; pass the results to <see cref="Opened"/>. The lock comes first.
    /// </summary>
    /// <param name="withLots">False reads only the live lots' totals: enough for an account that will only be granted points.</param>
    public static void AddOpenTo(SqlBatch batch, long memberId, DateTime now, bool withLots = true)
    {
        batch.Add(LockSql, new { MemberId = memberId });
        batch.Add(withLots ? LiveLotsSql : LiveBalanceSql, new { MemberId = memberId, Now = now });
    }

    /// <summary>Adds the read of one of the member's lots, live or not, to a batch that already took the lock.</summary>
    public static void AddLotTo(SqlBatch batch, long lotId, long memberId) =>
        batch.Add(LotByIdSql, new { Id = lotId, MemberId = memberId });

    /// <summary>As <see cref="AddOpenTo"/>, for the holder of a card; the caller refuses a card that is not active.</summary>
    public static void AddOpenByCardTo(SqlBatch batch, string cardNumber, DateTime now, bool withLots = true)
    {
        batch.Add(LockByCardSql, new { CardNumber = cardNumber });
        batch.Add(withLots ? LiveLotsByCardSql : LiveBalanceByCardSql, new { CardNumber = cardNumber, Now = now });
    }

    /// <summary>
    /// Reads what <see cref="AddOpenTo"/> added, with the same <paramref name="withLots"/>;
    /// <see cref="OpenedRead.Debt"/> is null when the member has no account.
    /// </summary>
    public static async Task<OpenedRead> ReadOpenedAsync(BatchResults grid, bool withLots = true) =>
        await ReadLotsAsync(grid, await grid.ReadSingleOrDefaultAsync<long?>(), withLots);

    /// <summary>
    /// Reads what <see cref="AddOpenByCardTo"/> added, with the same <paramref name="withLots"/>: the card
    /// (null when no card has the number) and its holder's account.
    /// </summary>
    public static async Task<(CardHolder? Card, OpenedRead Opened)> ReadOpenedByCardAsync(BatchResults grid, bool withLots = true)
    {
        var card = await grid.ReadSingleOrDefaultAsync<CardHolder>();
        return (card, await ReadLotsAsync(grid, card?.DebtPoints, withLots));
    }

    private static async Task<OpenedRead> ReadLotsAsync(BatchResults grid, long? debt, bool withLots)
    {
        if (withLots) return new OpenedRead(debt, (await grid.ReadAsync<PointLot>()).ToList());
        var live = await grid.ReadSingleAsync<LiveBalance>();
        return new OpenedRead(debt, [], live.AvailablePoints, live.PendingPoints, LotsLoaded: false);
    }

    /// <summary>
    /// The account as read under the lock. One read without its lots can be granted points and report its
    /// balance, but not spend, reverse or expire.
    /// </summary>
    public static PointsAccount Opened(Db db, DbConnection connection, DbTransaction tx, long memberId, DateTime now, string actor,
        OpenedRead read, CancellationToken ct) =>
        new(db, connection, tx, memberId, now, actor, ct)
        {
            Debt = read.Debt ?? 0, _debtAtOpen = read.Debt ?? 0, Lots = read.Lots,
            _unloadedAvailable = read.UnloadedAvailable, _unloadedPending = read.UnloadedPending, _lotsLoaded = read.LotsLoaded,
        };

    /// <summary>
    /// Grants points as a new lot. Any debt is paid off first, then the rest lands in the lot.
    /// <paramref name="lotId"/> is an id taken up front ({next point_lots}), or 0 to let the insert assign one.
    /// </summary>
    public PointLot Grant(string source, string entryType, long points, DateTime availableAt, DateTime expiresAt,
        long? purchaseId, long? refundId, string? reason, long lotId = 0)
    {
        // Points that are already past their expiry (a refund giving back long-expired points, a receipt
        // replayed after a lifetime) are worthless: they must not pay off debt.
        var payDebt = expiresAt > Now ? Math.Min(Debt, points) : 0;
        Debt -= payDebt;
        var lot = new PointLot
        {
            Id = lotId, MemberId = MemberId, Source = source, PurchaseId = purchaseId, GrantedPoints = points,
            RemainingPoints = points - payDebt, AvailableAt = availableAt, ExpiresAt = expiresAt,
            // Pending or available is a matter of time (available_at), read at every balance: a stored
            // "pending" would cost a partial index entry now and a rewrite of the whole lot when it ripens.
            Status = LotStatuses.Active,
        };
        _newLots.Add(lot);
        _entries.Add(new Entry(entryType, points, lot, purchaseId, refundId, reason));
        if (lot.RemainingPoints > 0 && lot.ExpiresAt > Now)
        {
            Lots.Add(lot);
            Lots.Sort(static (a, b) => a.ExpiresAt != b.ExpiresAt ? a.ExpiresAt.CompareTo(b.ExpiresAt) : a.Id.CompareTo(b.Id));
        }
        return lot;
    }

    /// <summary>Takes points from available lots, soonest expiry first. The caller has checked the balance.</summary>
    public List<LotAllocation> TakeFromAvailable(long points)
    {
        RequireLots();
        var used = new List<LotAllocation>();
        var left = points;
        foreach (var lot in Lots)
        {
            if (left == 0) break;
            if (!lot.IsAvailable(Now) || lot.RemainingPoints == 0) continue;
            var take = Math.Min(left, lot.RemainingPoints);
            lot.RemainingPoints -= take;
            left -= take;
            used.Add(new LotAllocation(lot, take));
            _changedLots.Add(lot);
        }
        if (left > 0) throw new InvalidOperationException("Spend exceeds the available lots.");
        return used;
    }

    /// <summary>Spends points (redemption, negative adjustment); rejects what the available balance cannot cover.</summary>
    public List<LotAllocation> Spend(string entryType, long points, long? purchaseId, string? reason, string field)
    {
        if (points > Available)
        {
            throw DomainRejection.Unprocessable("insufficient_points",
                $"The member has {Math.Max(0, Available)} available points; {points} were requested.", field);
        }
        var used = TakeFromAvailable(points);
        _entries.Add(new Entry(entryType, -points, used.Count == 1 ? used[0].Lot : null, purchaseId, null, reason));
        return used;
    }

    /// <summary>
    /// Reverses points a purchase earned. Never more than the lot granted less what already expired or
    /// was reversed; taken from the lot first, then other available points, and whatever is left becomes debt.
    /// </summary>
    /// <param name="readAhead">The lot as read under the lock (<see cref="AddLotTo"/>), when it is not among the live lots.</param>
    public async Task<long> ReverseEarnedAsync(long lotId, long target, long purchaseId, long refundId, PointLot? readAhead = null)
    {
        if (target <= 0) return 0;
        RequireLots();
        var lot = Lots.FirstOrDefault(l => l.Id == lotId)
                  ?? (readAhead?.Id == lotId ? readAhead : null)
                  ?? await _connection.QuerySingleAsync<PointLot>(new CommandDefinition(_db.Sql(LotByIdSql),
                      new { Id = lotId, MemberId }, _tx, cancellationToken: _ct));
        // Expire what is already past its date first, so the reversal does not depend on whether the job has run.
        if (lot.ExpiresAt <= Now && lot.RemainingPoints > 0) Expire(lot);
        var reversible = lot.GrantedPoints - lot.ExpiredPoints - lot.ReversedPoints;
        var reverse = Math.Min(target, Math.Max(0, reversible));
        if (reverse == 0) return 0;
        var fromLot = Math.Min(reverse, lot.RemainingPoints);
        lot.RemainingPoints -= fromLot;
        lot.ReversedPoints += reverse;
        if (lot.RemainingPoints == 0) lot.Status = LotStatuses.Reversed;
        _changedLots.Add(lot);
        var shortfall = reverse - fromLot;
        var fromOthers = Math.Min(shortfall, Math.Max(0, Lots.Where(l => l.IsAvailable(Now)).Sum(l => l.RemainingPoints)));
        if (fromOthers > 0) TakeFromAvailable(fromOthers);
        Debt += shortfall - fromOthers;
        _entries.Add(new Entry(LedgerEntryTypes.EarnReversal, -reverse, lot, purchaseId, refundId, null));
        return reverse;
    }

    public void Expire(PointLot lot)
    {
        RequireLots();
        var points = lot.RemainingPoints;
        lot.ExpiredPoints += points;
        lot.RemainingPoints = 0;
        lot.Status = LotStatuses.Expired;
        _changedLots.Add(lot);
        if (points > 0) _entries.Add(new Entry(LedgerEntryTypes.Expire, -points, lot, lot.PurchaseId, null, null));
        Lots.Remove(lot);
    }

    /// <summary>
    /// Adds every change — new lots with their ledger entries, lot updates, other ledger entries,
    /// the debt — to <paramref name="batch"/>, which the caller completes with its own statements
    /// and executes in one round trip. A new lot has either an id taken up front or Id 0; for the
    /// latter, its ledger entries find the id as the member's newest lot in the same batch, so lots
    /// with known ids are inserted first (on SQLite the next default id is MAX(id) + 1).
    /// </summary>
    public void Flush(SqlBatch batch)
    {
        foreach (var lot in _newLots.OrderBy(l => l.Id == 0))
        {
            _changedLots.Remove(lot);
            if (lot.Id != 0)
            {
                // Its id is known: the entries below link to it like to any stored lot.
                batch.Add(InsertLotWithIdSql, new
                {
                    lot.Id, lot.MemberId, lot.Source, lot.PurchaseId, lot.GrantedPoints, lot.RemainingPoints, lot.AvailableAt,
                    lot.ExpiresAt, lot.Status, Now,
                });
                continue;
            }
            batch.Add(InsertLotSql, new
            {
                lot.MemberId, lot.Source, lot.PurchaseId, lot.GrantedPoints, lot.RemainingPoints, lot.AvailableAt, lot.ExpiresAt,
                lot.Status, Now,
            });
            foreach (var e in _entries.Where(e => ReferenceEquals(e.Lot, lot)))
            {
                batch.Add(InsertEntryForNewLotSql, new { MemberId, e.EntryType, e.Points, e.PurchaseId, e.RefundId, e.Reason, Actor = _actor, Now });
            }
        }
        foreach (var lot in _changedLots)
        {
            batch.Add(UpdateLotSql, new { lot.Id, lot.MemberId, lot.RemainingPoints, lot.ReversedPoints, lot.ExpiredPoints, lot.Status });
        }
        foreach (var e in _entries.Where(e => e.Lot is null || e.Lot.Id != 0 || !_newLots.Contains(e.Lot)))
        {
            batch.Add(InsertEntrySql, new
            {
                MemberId, e.EntryType, e.Points, LotId = e.Lot?.Id, e.PurchaseId, e.RefundId, e.Reason, Actor = _actor, Now,
            });
        }
        _newLots.Clear();
        _changedLots.Clear();
        _entries.Clear();
        if (Debt != _debtAtOpen)
        {
            batch.Add(UpdateDebtSql, new { Debt, MemberId });
            _debtAtOpen = Debt;
        }
    }

    /// <summary>Writes every pending change in one round trip.</summary>
    public Task SaveAsync()
    {
        var batch = new SqlBatch(_db);
        Flush(batch);
        return batch.ExecuteAsync(_connection, _tx, _ct);
    }

    public BalanceSnapshot Snapshot() => new(Available, Pending);
}

/// <summary>A scanned card, and the debt on its holder's account as read under the lock.</summary>
public sealed class CardHolder
{
    public long CardId { get; set; }
    public long MemberId { get; set; }
    public string Status { get; set; } = "";
    public long DebtPoints { get; set; }
}

/// <summary>A member's account as read under the lock: the debt (null: no account), and the live lots or only their totals.</summary>
public sealed record OpenedRead(long? Debt, List<PointLot> Lots, long UnloadedAvailable = 0, long UnloadedPending = 0, bool LotsLoaded = true);

/// <summary>What the member can spend now (negative while in debt) and what is still pending.</summary>
public sealed record BalanceSnapshot(long Available, long Pending);
