using Dapper;
using LoyaltyApi.Infrastructure;
using Microsoft.AspNetCore.Http.HttpResults;
using Microsoft.Extensions.Options;

namespace LoyaltyApi.Features.Operations;

public sealed class IdempotencyOptions
{
    public const string Section = "Idempotency";
    /// <summary>How long an Idempotency-Key is remembered; 0 keeps every record for ever.</summary>
    public int RetentionDays { get; set; } = 30;
    /// <summary>How often the purge runs; 0 turns the background loop off (the admin endpoint still works).</summary>
    public int PurgeIntervalSeconds { get; set; } = 600;
}

/// <param name="RecordsDeleted">Idempotency records deleted by this run.</param>
/// <param name="DeletedBefore">Records created before this instant were deleted; null when retention is off.</param>
public sealed record IdempotencyPurge(long RecordsDeleted, DateTime? DeletedBefore);

/// <summary>
/// Forgets Idempotency-Keys older than <see cref="IdempotencyOptions.RetentionDays"/>. Every keyed write leaves
/// a record, so without this the table, and the key index every keyed write inserts into, grow for ever.
/// A purchase or refund retried after its key is forgotten is still deduped by its store and receipt or
/// refund number; an adjustment or enrollment retried that late is taken as new.
/// </summary>
public sealed partial class IdempotencyRetention(Db db, TimeProvider clock, IOptions<IdempotencyOptions> options, ILogger<IdempotencyRetention> logger)
{
    // Served by ix_idempotency_keys_created (migration 0008).
    private const string OldestSql = """
        SELECT MIN(created_at)
        FROM idempotency_keys
        """;

    private const string DeleteSql = """
        DELETE FROM idempotency_keys
        WHERE created_at < @Before
        """;

    /// <summary>
    /// A minute of records per delete, oldest first: at 1 000 keyed writes a second that is 60 000 rows, so
    /// no delete becomes one transaction the size of the table, not even the first run on a table that grew
    /// for months.
    /// </summary>
    private static readonly TimeSpan Step = TimeSpan.FromMinutes(1);

    public async Task<IdempotencyPurge> RunOnceAsync(CancellationToken ct)
    {
        var days = options.Value.RetentionDays;
        if (days <= 0) return new IdempotencyPurge(0, null);
        var cutoff = clock.GetUtcNow().UtcDateTime.AddDays(-days);
        long deleted = 0;
        await using var connection = await db.OpenAsync(ct);
        // The oldest record is read again after each step, so a quiet night costs one step, not hundreds.
        while (await connection.ExecuteScalarAsync<DateTime?>(new CommandDefinition(db.Sql(OldestSql), cancellationToken: ct)) is { } oldest
               && oldest < cutoff)
        {
            var before = oldest + Step < cutoff ? oldest + Step : cutoff;
            var step = await connection.ExecuteAsync(new CommandDefinition(db.Sql(DeleteSql), new { Before = before }, cancellationToken: ct));
            // Nothing deleted: another instance took this minute. It goes on with the rest; the next run catches up.
            if (step == 0) break;
            deleted += step;
        }
        if (deleted > 0) LogPurged(logger, deleted, days);
        return new IdempotencyPurge(deleted, cutoff);
    }

    public static RouteGroupBuilder MapIdempotencyRetention(IEndpointRouteBuilder app)
    {
        var group = app.MapGroup("/v1/admin/idempotency-purges").WithTags("Operations").RequireAuthorization(Policies.Admin);
        group.MapPost("", RunNow).WithName("PurgeIdempotencyKeys")
            .WithSummary("Forget Idempotency-Keys older than Idempotency:RetentionDays now (it also runs in the background every " +
                         "Idempotency:PurgeIntervalSeconds). Purchases and refunds stay deduped by their receipt and refund numbers.")
            .ProducesProblem(403);
        return group;
    }

    public static async Task<Ok<IdempotencyPurge>> RunNow(IdempotencyRetention job, CancellationToken ct) => TypedResults.Ok(await job.RunOnceAsync(ct));

    [LoggerMessage(Level = LogLevel.Information, Message = "Idempotency retention: {Records} records older than {Days} days deleted")]
    private static partial void LogPurged(ILogger logger, long records, int days);
}

public sealed class IdempotencyRetentionService(IdempotencyRetention job, IOptions<IdempotencyOptions> options, ILogger<IdempotencyRetentionService> logger)
    : PeriodicJob(logger)
{
    protected override int IntervalSeconds => options.Value.RetentionDays > 0 ? options.Value.PurgeIntervalSeconds : 0;

    protected override Task RunOnceAsync(CancellationToken ct) => job.RunOnceAsync(ct);
}
