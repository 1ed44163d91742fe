using System.Data.Common;
using System.Globalization;
using Dapper;
using FluentValidation;
using LoyaltyApi.Features.Members;
using LoyaltyApi.Features.ProgramSettings;
using LoyaltyApi.Infrastructure;
using Microsoft.AspNetCore.Http.HttpResults;

namespace LoyaltyApi.Features.Points;

public sealed record ExpiringPoints(DateOnly Date, long Points);

/// <summary>Lifetime totals from the ledger: earned (purchases and bonuses), redeemed (net of refunds), expired, reversed by refunds, adjusted.</summary>
public sealed record LifetimePoints(long Earned, long Redeemed, long Expired, long Reversed, long Adjusted);

/// <param name="Available">Spendable now; negative while refunds have left a debt.</param>
/// <param name="Pending">Earned but still inside the activation delay.</param>
/// <param name="ExpiringSoon">Points that expire within 30 days, by the last day they can be used (program time zone).</param>
public sealed record MemberBalance(long MemberId, long Available, long Pending, IReadOnlyList<ExpiringPoints> ExpiringSoon, LifetimePoints Lifetime);

public sealed record MeResponse(MemberDto Member, MemberBalance Balance);

public sealed class LedgerEntryDto
{
    public long Id { get; set; }
    public string EntryType { get; set; } = "";
    public long Points { get; set; }
    public long? PurchaseId { get; set; }
    public long? RefundId { get; set; }
    public string? Reason { get; set; }
    public string? Actor { get; set; }
    public DateTime CreatedAt { get; set; }
}

public sealed record LedgerPage(IReadOnlyList<LedgerEntryDto> Items, string? NextCursor);

/// <param name="Points">Positive grants a lot (available now, usual lifetime); negative takes from available points.</param>
/// <param name="Reason">Why; kept in the ledger with who and when.</param>
public sealed record AdjustmentRequest(long Points, string Reason);

public sealed record AdjustmentResponse(long MemberId, long Points, string Reason, BalanceSnapshot Balance);

public sealed class AdjustmentValidator : AbstractValidator<AdjustmentRequest>
{
    public AdjustmentValidator()
    {
        RuleFor(x => x.Points).NotEqual(0).InclusiveBetween(-10_000_000, 10_000_000);
        RuleFor(x => x.Reason).NotEmpty().MaximumLength(500);
    }
}

public static class BalanceQueries
{
    private sealed class SnapshotRow
    {
        public long DebtPoints { get; set; }
        public long AvailablePoints { get; set; }
        public long PendingPoints { get; set; }
    }

    private const string SnapshotSql = """
        SELECT a.debt_points,
               (SELECT COALESCE(SUM(l.remaining_points), 0) FROM point_lots l
                WHERE l.member_id = a.member_id AND l.remaining_points > 0 AND l.expires_at > @Now AND l.available_at <= @Now) AS available_points,
               (SELECT COALESCE(SUM(l.remaining_points), 0) FROM point_lots l
                WHERE l.member_id = a.member_id AND l.remaining_points > 0 AND l.expires_at > @Now AND l.available_at > @Now) AS pending_points
        FROM point_accounts a
        WHERE a.member_id = @MemberId
        """;

    public sealed class CardSnapshot
    {
        public long CardId { get; set; }
        public long MemberId { get; set; }
        public string Status { get; set; } = "";
        public string? MemberName { get; set; }
        public long DebtPoints { get; set; }
        public long AvailablePoints { get; set; }
        public long PendingPoints { get; set; }

        public BalanceSnapshot Balance => new(AvailablePoints - DebtPoints, PendingPoints);
    }

    // One pass over the member's live lots for both sums: this runs at every scan and every quote.
    private const string CardLotSums = """
               COALESCE(SUM(CASE WHEN l.available_at <= @Now THEN l.remaining_points ELSE 0 END), 0) AS available_points,
               COALESCE(SUM(CASE WHEN l.available_at > @Now THEN l.remaining_points ELSE 0 END), 0) AS pending_points
        """;

    private const string CardLiveLots = """
        LEFT JOIN point_lots l ON l.member_id = c.member_id AND l.remaining_points > 0 AND l.expires_at > @Now
        WHERE c.card_number = @CardNumber
        """;

    private const string CardSnapshotSql = """
        SELECT c.id AS card_id, c.member_id, c.status, m.name AS member_name, a.debt_points,
        """ + "\n" + CardLotSums + "\n" + """
        FROM cards c
        JOIN members m ON m.id = c.member_id
        JOIN point_accounts a ON a.member_id = c.member_id
        """ + "\n" + CardLiveLots + "\n" + """
        GROUP BY c.id, c.member_id, c.status, m.name, a.debt_points
        """;

    // A quote shows no name: one join fewer on the busiest read.
    private const string CardBalanceSql = """
        SELECT c.id AS card_id, c.member_id, c.status, a.debt_points,
        """ + "\n" + CardLotSums + "\n" + """
        FROM cards c
        JOIN point_accounts a ON a.member_id = c.member_id
        """ + "\n" + CardLiveLots + "\n" + """
        GROUP BY c.id, c.member_id, c.status, a.debt_points
        """;

    /// <summary>A card, its member and the member's balance in one query: what a POS needs at a scan.</summary>
    public static Task<CardSnapshot?> CardSnapshotAsync(Db db, DbConnection connection, string cardNumber, DateTime now, CancellationToken ct) =>
        SqlBatch.QuerySingleOrDefaultAsync<CardSnapshot>(db, connection, CardSnapshotSql, new { CardNumber = cardNumber, Now = now }, ct);

    /// <summary>As <see cref="CardSnapshotAsync"/> without the holder's name (<see cref="CardSnapshot.MemberName"/> stays null): what a quote needs.</summary>
    public static Task<CardSnapshot?> CardBalanceAsync(Db db, DbConnection connection, string cardNumber, DateTime now, CancellationToken ct) =>
        SqlBatch.QuerySingleOrDefaultAsync<CardSnapshot>(db, connection, CardBalanceSql, new { CardNumber = cardNumber, Now = now }, ct);

    /// <summary>Balance as of <paramref name="now"/>: lots past expiry are never counted, whether or not the expiry job has run.</summary>
    public static async Task<BalanceSnapshot?> SnapshotAsync(Db db, DbConnection connection, long memberId, DateTime now, CancellationToken ct)
    {
        var row = await SqlBatch.QuerySingleOrDefaultAsync<SnapshotRow>(db, connection, SnapshotSql, new { MemberId = memberId, Now = now }, ct);
        return row is null ? null : new BalanceSnapshot(row.AvailablePoints - row.DebtPoints, row.PendingPoints);
    }
}

public static class BalanceEndpoints
{
    private sealed class ExpiringRow
    {
        public DateTime ExpiresAt { get; set; }
        public long Points { get; set; }
    }

    private sealed class TotalRow
    {
        public string EntryType { get; set; } = "";
        public long Points { get; set; }
    }

    private const string ExpiringSql = """
        SELECT expires_at, SUM(remaining_points) AS points
        FROM point_lots
        WHERE member_id = @MemberId AND remaining_points > 0 AND expires_at > @Now AND expires_at <= @Until
        GROUP BY expires_at
        ORDER BY expires_at
        """;

    private const string OverdueSql = """
        SELECT COALESCE(SUM(remaining_points), 0)
        FROM point_lots
        WHERE member_id = @MemberId AND remaining_points > 0 AND expires_at <= @Now
        """;

    private const string TotalsSql = """
        SELECT entry_type, SUM(points) AS points
        FROM ledger_entries
        WHERE member_id = @MemberId
        GROUP BY entry_type
        """;

    private const string AccountExistsSql = """
        SELECT COUNT(*)
        FROM point_accounts
        WHERE member_id = @MemberId
        """;

    private const string PageSql = """
        SELECT id, entry_type, points, purchase_id, refund_id, reason, actor, created_at
        FROM ledger_entries
        WHERE member_id = @MemberId AND id < @Before
        ORDER BY id DESC
        LIMIT @Take
        """;


    public static RouteGroupBuilder MapBalances(this IEndpointRouteBuilder app)
    {
        var group = app.MapGroup("/v1").WithTags("Balances");
        group.MapGet("members/{id:long}/balance", GetBalance).WithName("GetMemberBalance")
            .WithSummary("Available, pending and soon-expiring points, and lifetime totals.")
            .RequireAuthorization(Policies.PosOrAdmin).ProducesProblem(404);
        group.MapGet("members/{id:long}/transactions", GetTransactions).WithName("GetMemberTransactions")
            .WithSummary("The member's ledger, newest first, with who made each entry. Cursor paging; limit 1–100 (default 20).")
            .RequireAuthorization(Policies.Admin).ProducesProblem(400).ProducesProblem(404);
        group.MapPost("members/{id:long}/adjustments", Adjust).WithName("AdjustPoints")
            .WithSummary("Manual adjustment with a reason; recorded in the ledger with who and when. Supports Idempotency-Key.")
            .RequireAuthorization(Policies.Admin).Validate<AdjustmentRequest>().ProducesProblem(404).ProducesProblem(409).ProducesProblem(422).AcceptsIdempotencyKey();
        group.MapGet("me", GetMe).WithName("GetMe")
            .WithSummary("The signed-in member (bearer JWT, sub = member id) with their balance.")
            .RequireAuthorization(Policies.Member).ProducesProblem(404);
        group.MapGet("me/transactions", GetMyTransactions).WithName("GetMyTransactions")
            .WithSummary("The signed-in member's ledger, newest first. Cursor paging; limit 1–100 (default 20).")
            .RequireAuthorization(Policies.Member).ProducesProblem(400);
        return group;
    }

    public static async Task<MemberBalance?> LoadBalanceAsync(Db db, ProgramCache programs, DbConnection connection, long memberId, DateTime now, CancellationToken ct)
    {
        var snapshot = await BalanceQueries.SnapshotAsync(db, connection, memberId, now, ct);
        if (snapshot is null) return null;
        var program = await programs.GetAsync(db, connection, null, ct);
        var expiring = await connection.QueryAsync<ExpiringRow>(new CommandDefinition(db.Sql(ExpiringSql),
            new { MemberId = memberId, Now = now, Until = now.AddDays(30) }, cancellationToken: ct));
        // A lot expiring at midnight can last be used the day before.
        var byDay = expiring.GroupBy(e => program.LocalDate(e.ExpiresAt.AddTicks(-1)))
            .Select(g => new ExpiringPoints(g.Key, g.Sum(e => e.Points))).ToArray();
        var totals = (await connection.QueryAsync<TotalRow>(new CommandDefinition(db.Sql(TotalsSql), new { MemberId = memberId }, cancellationToken: ct)))
            .ToDictionary(t => t.EntryType, t => t.Points);
        var overdue = await connection.ExecuteScalarAsync<long>(new CommandDefinition(db.Sql(OverdueSql), new { MemberId = memberId, Now = now }, cancellationToken: ct));
        long T(string type) => totals.GetValueOrDefault(type);
        var lifetime = new LifetimePoints(
            Earned: T(LedgerEntryTypes.Earn) + T(LedgerEntryTypes.WelcomeBonus),
            Redeemed: -T(LedgerEntryTypes.Redeem) - T(LedgerEntryTypes.RedeemReturn),
            Expired: -T(LedgerEntryTypes.Expire) + overdue,
            Reversed: -T(LedgerEntryTypes.EarnReversal),
            Adjusted: T(LedgerEntryTypes.Adjustment));
        return new MemberBalance(memberId, snapshot.Available, snapshot.Pending, byDay, lifetime);
    }

    public static async Task<Results<Ok<MemberBalance>, ProblemHttpResult>> GetBalance(long id, Db db, ProgramCache programs, TimeProvider clock, CancellationToken ct)
    {
        await using var connection = await db.OpenAsync(ct);
        var balance = await LoadBalanceAsync(db, programs, connection, id, clock.GetUtcNow().UtcDateTime, ct);
        return balance is null ? Problems.NotFound("Member", "id") : TypedResults.Ok(balance);
    }

    public static async Task<Results<Ok<MeResponse>, ProblemHttpResult>> GetMe(HttpContext http, Db db, ProgramCache programs, TimeProvider clock, CancellationToken ct)
    {
        var memberId = Caller.From(http.User).MemberId!.Value;
        await using var connection = await db.OpenAsync(ct);
        var member = await MemberEndpoints.FindByIdAsync(db, connection, null, memberId, ct);
        var balance = member is null ? null : await LoadBalanceAsync(db, programs, connection, memberId, clock.GetUtcNow().UtcDateTime, ct);
        return member is null || balance is null ? Problems.NotFound("Member") : TypedResults.Ok(new MeResponse(member, balance));
    }

    public static Task<Results<Ok<LedgerPage>, ProblemHttpResult>> GetTransactions(long id, string? cursor, int? limit, Db db, CancellationToken ct) =>
        PageAsync(db, id, cursor, limit, includeActor: true, ct);

    public static Task<Results<Ok<LedgerPage>, ProblemHttpResult>> GetMyTransactions(HttpContext http, string? cursor, int? limit, Db db, CancellationToken ct) =>
        PageAsync(db, Caller.From(http.User).MemberId!.Value, cursor, limit, includeActor: false, ct);

    private static async Task<Results<Ok<LedgerPage>, ProblemHttpResult>> PageAsync(Db db, long memberId, string? cursor, int? limit, bool includeActor, CancellationToken ct)
    {
        if (Paging.TryRead("le", cursor, limit, out var before, out var take) is { } invalid) return invalid;
        await using var connection = await db.OpenAsync(ct);
        if (await connection.ExecuteScalarAsync<long>(new CommandDefinition(db.Sql(AccountExistsSql), new { MemberId = memberId }, cancellationToken: ct)) == 0)
        {
            return Problems.NotFound("Member", "id");
        }
        var rows = (await connection.QueryAsync<LedgerEntryDto>(new CommandDefinition(db.Sql(PageSql),
            new { MemberId = memberId, Before = before ?? long.MaxValue, Take = take + 1 }, cancellationToken: ct))).ToList();
        var next = Paging.Cut(rows, take, "le", r => r.Id);
        if (!includeActor) rows.ForEach(r => r.Actor = null);
        return TypedResults.Ok(new LedgerPage(rows, next));
    }

    public static async Task<Results<Created<AdjustmentResponse>, ProblemHttpResult>> Adjust(long id, AdjustmentRequest body, HttpContext http, Db db, ProgramCache programs, TimeProvider clock, CancellationToken ct)
    {
        var caller = Caller.From(http.User);
        var now = clock.GetUtcNow().UtcDateTime;
        try
        {
            var key = Idempotency.KeyFrom(http);
            var operation = $"adjust:{id}";
            var hash = Idempotency.HashOf(operation, body);
            var (response, replayed) = await Transactions.RunAsync(db, async (connection, tx) =>
            {
                var account = await PointsAccount.OpenAsync(db, connection, tx, id, now, caller.ClientName, ct) ?? throw DomainRejection.NotFound("Member", "id");
                if (await Idempotency.FindAsync(db, connection, tx, caller.ClientKey, key, operation, hash, ct) is { } stored)
                {
                    return (Json.Deserialize<AdjustmentResponse>(stored.ResponseJson), true);
                }
                if (body.Points > 0)
                {
                    var program = await programs.GetAsync(db, connection, tx, ct);
                    account.Grant(LotSources.Adjustment, LedgerEntryTypes.Adjustment, body.Points, now, program.ExpiryFor(now), null, null, body.Reason);
                }
                else
                {
                    account.Spend(LedgerEntryTypes.Adjustment, -body.Points, null, body.Reason, "points");
                }
                await account.SaveAsync();
                var response = new AdjustmentResponse(id, body.Points, body.Reason, account.Snapshot());
                await Idempotency.SaveAsync(db, connection, tx, caller.ClientKey, key, operation, hash, 201, Json.Serialize(response), now, ct);
                return (response, false);
            }, ct);
            if (replayed) Idempotency.MarkReplayed(http);
            return TypedResults.Created($"/v1/members/{id}/transactions", response);
        }
        catch (DomainRejection r)
        {
            return r.ToProblem();
        }
    }
}
