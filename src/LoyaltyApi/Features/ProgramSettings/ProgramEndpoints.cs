using System.Data.Common;
using Dapper;
using FluentValidation;
using LoyaltyApi.Infrastructure;
using Microsoft.AspNetCore.Http.HttpResults;

namespace LoyaltyApi.Features.ProgramSettings;

public enum ExpiryRounding { None, EndOfDay, EndOfMonth }

/// <summary>The program's rules for points. Rates are basis points (1/100 of a percent).</summary>
/// <param name="Currency">ISO 4217 code; every amount on the API is in this currency.</param>
/// <param name="TimeZone">IANA time zone used for end-of-day expiry and day boundaries.</param>
/// <param name="EarnRateBps">Points per 1.00 of currency paid, in basis points: 10000 = 1 point per 1.00; 500 = 5 points per 100.00. Rounded down per purchase.</param>
/// <param name="PointValueMinor">What one point pays, in minor units of the currency (1 = 0.01 USD).</param>
/// <param name="MaxRedeemShareBps">Largest share of a receipt that points may pay, in basis points (5000 = 50%).</param>
/// <param name="ActivationDelayDays">Days a purchase's points stay pending (the return window).</param>
/// <param name="PointsLifetimeDays">Days points live after activation; 0 means they never expire.</param>
/// <param name="ExpiryRounding">How the expiry moment is rounded in the program's time zone.</param>
/// <param name="WelcomeBonusPoints">Points granted on enrollment, available at once.</param>
public sealed record ProgramDto(
    string Currency,
    string TimeZone,
    int EarnRateBps,
    int PointValueMinor,
    int MaxRedeemShareBps,
    int ActivationDelayDays,
    int PointsLifetimeDays,
    ExpiryRounding ExpiryRounding,
    int WelcomeBonusPoints);

public sealed class ProgramValidator : AbstractValidator<ProgramDto>
{
    public ProgramValidator()
    {
        RuleFor(x => x.Currency).Must(Money.IsCurrencyCode).WithMessage("Currency must be an ISO 4217 code such as USD.");
        RuleFor(x => x.TimeZone).NotEmpty().MaximumLength(64)
            .Must(tz => tz is not null && TimeZoneInfo.TryFindSystemTimeZoneById(tz, out _)).WithMessage("Unknown time zone; use an IANA id such as Europe/Berlin.");
        RuleFor(x => x.EarnRateBps).InclusiveBetween(0, 1_000_000);
        RuleFor(x => x.PointValueMinor).InclusiveBetween(1, 1_000_000);
        RuleFor(x => x.MaxRedeemShareBps).InclusiveBetween(0, 10_000);
        RuleFor(x => x.ActivationDelayDays).InclusiveBetween(0, 365);
        RuleFor(x => x.PointsLifetimeDays).InclusiveBetween(0, 36_500);
        RuleFor(x => x.ExpiryRounding).IsInEnum();
        RuleFor(x => x.WelcomeBonusPoints).InclusiveBetween(0, 1_000_000);
    }
}

/// <summary>The program as the purchase pipeline uses it.</summary>
public sealed class ProgramRules
{
    public string Currency { get; set; } = "";
    public string TimeZone { get; set; } = "UTC";
    public int EarnRateBps { get; set; }
    public int PointValueMinor { get; set; }
    public int MaxRedeemShareBps { get; set; }
    public int ActivationDelayDays { get; set; }
    public int PointsLifetimeDays { get; set; }
    public string ExpiryRounding { get; set; } = nameof(ProgramSettings.ExpiryRounding.EndOfDay);
    public int WelcomeBonusPoints { get; set; }

    public static readonly DateTime NeverExpires = new(9999, 12, 31, 0, 0, 0, DateTimeKind.Utc);

    public ProgramDto ToDto() => new(Currency, TimeZone, EarnRateBps, PointValueMinor, MaxRedeemShareBps,
        ActivationDelayDays, PointsLifetimeDays, Enum.Parse<ExpiryRounding>(ExpiryRounding), WelcomeBonusPoints);

    public TimeZoneInfo Zone => TimeZoneInfo.TryFindSystemTimeZoneById(TimeZone, out var tz) ? tz : TimeZoneInfo.Utc;

    /// <summary>Expiry is fixed when a grant is made: activation + lifetime, rounded up to the end of the day (or month) in the program's zone.</summary>
    public DateTime ExpiryFor(DateTime availableAtUtc)
    {
        if (PointsLifetimeDays == 0) return NeverExpires;
        var raw = availableAtUtc.AddDays(PointsLifetimeDays);
        var zone = Zone;
        var local = TimeZoneInfo.ConvertTimeFromUtc(raw, zone);
        DateTime localEnd = ExpiryRounding switch
        {
            nameof(ProgramSettings.ExpiryRounding.EndOfDay) => local.Date.AddDays(1),
            nameof(ProgramSettings.ExpiryRounding.EndOfMonth) => new DateTime(local.Year, local.Month, 1).AddMonths(1),
            _ => local,
        };
        if (ExpiryRounding == nameof(ProgramSettings.ExpiryRounding.None)) return raw;
        // Points are usable until the end of the day: they expire at the first instant of the next one.
        localEnd = DateTime.SpecifyKind(localEnd, DateTimeKind.Unspecified);
        while (zone.IsInvalidTime(localEnd)) localEnd = localEnd.AddHours(1);
        return TimeZoneInfo.ConvertTimeToUtc(localEnd, zone);
    }

    public DateOnly LocalDate(DateTime utc) => DateOnly.FromDateTime(TimeZoneInfo.ConvertTimeFromUtc(utc, Zone));
}

public static class ProgramEndpoints
{
    private const string SelectSql = """
        SELECT currency, time_zone, earn_rate_bps, point_value_minor, max_redeem_share_bps,
               activation_delay_days, points_lifetime_days, expiry_rounding, welcome_bonus_points
        FROM program_settings
        WHERE id = 1
        """;

    private const string UpdateSql = """
        UPDATE program_settings
        SET currency = @Currency, time_zone = @TimeZone, earn_rate_bps = @EarnRateBps, point_value_minor = @PointValueMinor,
            max_redeem_share_bps = @MaxRedeemShareBps, activation_delay_days = @ActivationDelayDays,
            points_lifetime_days = @PointsLifetimeDays, expiry_rounding = @ExpiryRounding,
            welcome_bonus_points = @WelcomeBonusPoints, updated_at = @Now
        WHERE id = 1
        """;

    private const string InsertSql = """
        INSERT INTO program_settings (id, currency, time_zone, earn_rate_bps, point_value_minor, max_redeem_share_bps,
            activation_delay_days, points_lifetime_days, expiry_rounding, welcome_bonus_points, updated_at)
        VALUES (1, @Currency, @TimeZone, @EarnRateBps, @PointValueMinor, @MaxRedeemShareBps,
            @ActivationDelayDays, @PointsLifetimeDays, @ExpiryRounding, @WelcomeBonusPoints, @Now)
        """;

    public static RouteGroupBuilder MapProgram(this IEndpointRouteBuilder app)
    {
        var group = app.MapGroup("/v1/program").WithTags("Program");
        group.MapGet("", GetProgram).WithName("GetProgram").WithSummary("The program's points rules.")
            .RequireAuthorization(Policies.AnyApiClient);
        group.MapPut("", PutProgram).WithName("PutProgram")
            .WithSummary("Replace the program's points rules. Existing grants keep the expiry they were given.")
            .RequireAuthorization(Policies.Admin).Validate<ProgramDto>();
        return group;
    }

    public static async Task<ProgramRules> LoadAsync(Db db, DbConnection connection, DbTransaction? tx, CancellationToken ct) =>
        await connection.QuerySingleOrDefaultAsync<ProgramRules>(new CommandDefinition(db.Sql(SelectSql), transaction: tx, cancellationToken: ct))
        ?? throw new DomainRejection(409, "program_not_configured", "The program has not been configured yet: PUT /v1/program first.");

    public static async Task<Ok<ProgramDto>> GetProgram(Db db, CancellationToken ct)
    {
        await using var connection = await db.OpenAsync(ct);
        var rules = await LoadAsync(db, connection, null, ct);
        return TypedResults.Ok(rules.ToDto());
    }

    public static async Task<Ok<ProgramDto>> PutProgram(ProgramDto body, Db db, ProgramCache cache, TimeProvider clock, CancellationToken ct)
    {
        var args = new
        {
            body.Currency, body.TimeZone, body.EarnRateBps, body.PointValueMinor, body.MaxRedeemShareBps,
            body.ActivationDelayDays, body.PointsLifetimeDays, ExpiryRounding = body.ExpiryRounding.ToString(),
            body.WelcomeBonusPoints, Now = clock.GetUtcNow().UtcDateTime,
        };
        await Transactions.RunAsync(db, async (connection, tx) =>
        {
            var updated = await connection.ExecuteAsync(new CommandDefinition(db.Sql(UpdateSql), args, tx, cancellationToken: ct));
            if (updated == 0)
            {
                await connection.ExecuteAsync(new CommandDefinition(db.Sql(InsertSql), args, tx, cancellationToken: ct));
            }
            return updated;
        }, ct);
        cache.Invalidate();
        return TypedResults.Ok(body);
    }
}
