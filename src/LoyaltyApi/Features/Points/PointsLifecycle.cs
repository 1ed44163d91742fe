using Dapper;
using LoyaltyApi.Infrastructure;
using Microsoft.AspNetCore.Http.HttpResults;
using Microsoft.Extensions.Options;

namespace LoyaltyApi.Features.Points;

public sealed class PointsLifecycleOptions
{
    public const string Section = "PointsLifecycle";
    /// <summary>How often the job runs; 0 turns the background loop off (the admin endpoint still works).</summary>
    public int IntervalSeconds { get; set; } = 60;
    public int MembersPerBatch { get; set; } = 200;
}

public sealed record LifecycleRun(int LotsExpired, long PointsExpired);

/// <summary>
/// Expires lots past their expiry, writing an expire entry to the ledger. Each member is processed under
/// the member's lock, and only lots that still have points are expired, so two instances running at once
/// cannot expire anything twice. Pending points need no job: a lot is available from its available_at.
/// </summary>
public sealed partial class PointsLifecycle(Db db, TimeProvider clock, IOptions<PointsLifecycleOptions> options, ILogger<PointsLifecycle> logger)
{
    // Served by ix_point_lots_expiry.
    private const string DueMembersSql = """
        SELECT DISTINCT member_id FROM point_lots
        WHERE expires_at <= @Now AND remaining_points > 0
        ORDER BY member_id
        LIMIT @Take
        """;

    private const string DueLotsSql = """
        SELECT id, member_id, source, purchase_id, granted_points, remaining_points, expired_points, reversed_points,
               available_at, expires_at, status
        FROM point_lots
        WHERE member_id = @MemberId AND expires_at <= @Now AND remaining_points > 0
        ORDER BY expires_at, id
        """;

    public async Task<LifecycleRun> RunOnceAsync(CancellationToken ct)
    {
        var now = clock.GetUtcNow().UtcDateTime;
        var lots = 0;
        long points = 0;
        while (!ct.IsCancellationRequested)
        {
            List<long> members;
            await using (var connection = await db.OpenAsync(ct))
            {
                members = (await connection.QueryAsync<long>(new CommandDefinition(db.Sql(DueMembersSql),
                    new { Now = now, Take = options.Value.MembersPerBatch }, cancellationToken: ct))).ToList();
            }
            if (members.Count == 0) break;
            foreach (var memberId in members)
            {
                // Per member, under the member's lock like every other write to lots, so the job never
                // deadlocks with a purchase that is updating the same member's lots.
                var (l, p) = await Transactions.RunAsync(db, async (connection, tx) =>
                {
                    var account = await PointsAccount.OpenAsync(db, connection, tx, memberId, now, "points-lifecycle", ct);
                    if (account is null) return (0, 0L);
                    var due = await connection.QueryAsync<PointLot>(new CommandDefinition(db.Sql(DueLotsSql),
                        new { MemberId = memberId, Now = now }, tx, cancellationToken: ct));
                    var (count, sum) = (0, 0L);
                    foreach (var lot in due)
                    {
                        sum += lot.RemainingPoints;
                        count++;
                        account.Expire(lot);
                    }
                    await account.SaveAsync();
                    return (count, sum);
                }, ct);
                lots += l;
                points += p;
            }
        }
        if (lots > 0) LogRun(logger, lots, points);
        return new LifecycleRun(lots, points);
    }

    public static RouteGroupBuilder MapPointsLifecycle(IEndpointRouteBuilder app)
    {
        var group = app.MapGroup("/v1/admin/points-lifecycle").WithTags("Operations").RequireAuthorization(Policies.Admin);
        group.MapPost("runs", RunNow).WithName("RunPointsLifecycle")
            .WithSummary("Run the expiry job now (it also runs in the background every PointsLifecycle:IntervalSeconds). " +
                         "Pending points need no job: they are available from their availableAt.");
        return group;
    }

    public static async Task<Ok<LifecycleRun>> RunNow(PointsLifecycle job, CancellationToken ct) => TypedResults.Ok(await job.RunOnceAsync(ct));

    [LoggerMessage(Level = LogLevel.Information, Message = "Points lifecycle: {Lots} lots expired ({Points} points)")]
    private static partial void LogRun(ILogger logger, int lots, long points);
}

public sealed class PointsLifecycleService(PointsLifecycle job, IOptions<PointsLifecycleOptions> options, ILogger<PointsLifecycleService> logger)
    : PeriodicJob(logger)
{
    protected override int IntervalSeconds => options.Value.IntervalSeconds;

    protected override Task RunOnceAsync(CancellationToken ct) => job.RunOnceAsync(ct);
}
