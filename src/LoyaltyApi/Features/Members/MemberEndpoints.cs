using System.Data.Common;
using System.Security.Cryptography;
using System.Text.RegularExpressions;
using Dapper;
using FluentValidation;
using LoyaltyApi.Features.Cards;
using LoyaltyApi.Features.Points;
using LoyaltyApi.Features.ProgramSettings;
using LoyaltyApi.Infrastructure;
using Microsoft.AspNetCore.Http.HttpResults;

namespace LoyaltyApi.Features.Members;

/// <param name="ExternalId">The brand's own customer id, unique.</param>
/// <param name="Phone">E.164 (+ and country code); spaces, dashes, dots and brackets are removed. Unique.</param>
/// <param name="Email">Trimmed and lower-cased. Unique.</param>
/// <param name="BirthDate">yyyy-MM-dd.</param>
/// <param name="ReferralCode">The referral code of the member who referred this one.</param>
/// <param name="CardNumber">Issue this card at enrollment (optional).</param>
public sealed record EnrollMemberRequest(string? ExternalId = null, string? Phone = null, string? Email = null, string? Name = null,
    DateOnly? BirthDate = null, string? ReferralCode = null, string? CardNumber = null);

public sealed class MemberDto
{
    public long Id { get; set; }
    public string? ExternalId { get; set; }
    public string? Phone { get; set; }
    public string? Email { get; set; }
    public string? Name { get; set; }
    public string? BirthDate { get; set; }
    public string ReferralCode { get; set; } = "";
    public long? ReferredByMemberId { get; set; }
    public string Status { get; set; } = "";
    public DateTime EnrolledAt { get; set; }
    /// <summary>The card issued at enrollment; only in the enrollment response.</summary>
    [System.Text.Json.Serialization.JsonIgnore(Condition = System.Text.Json.Serialization.JsonIgnoreCondition.WhenWritingNull)]
    public string? CardNumber { get; set; }
}

public static partial class ContactNormaliser
{
    [GeneratedRegex(@"^\+[1-9][0-9]{7,14}$")]
    private static partial Regex E164();

    [GeneratedRegex(@"^[^@\s]+@[^@\s]+\.[^@\s]+$")]
    private static partial Regex EmailShape();

    public static string? Phone(string? raw)
    {
        if (raw is null) return null;
        var cleaned = new string(raw.Where(c => c is not (' ' or '-' or '(' or ')' or '.')).ToArray());
        if (cleaned.StartsWith("00", StringComparison.Ordinal)) cleaned = "+" + cleaned[2..];
        return E164().IsMatch(cleaned) ? cleaned : null;
    }

    public static string? Email(string? raw)
    {
        if (raw is null) return null;
        var e = raw.Trim().ToLowerInvariant();
        return e.Length <= 254 && EmailShape().IsMatch(e) ? e : null;
    }
}

public sealed class EnrollMemberValidator : AbstractValidator<EnrollMemberRequest>
{
    public EnrollMemberValidator(TimeProvider clock)
    {
        RuleFor(x => x).Must(x => !string.IsNullOrWhiteSpace(x.ExternalId) || x.Phone is not null || x.Email is not null)
            .WithName("phone").WithMessage("Give at least one of phone, email or externalId.");
        RuleFor(x => x.ExternalId).MaximumLength(100).Must(v => v is null || v.Trim().Length > 0).WithMessage("externalId must not be blank.");
        RuleFor(x => x.Phone).Must(p => p is null || ContactNormaliser.Phone(p) is not null)
            .WithMessage("Phone must be in international form, e.g. +4915112345678.");
        RuleFor(x => x.Email).Must(e => e is null || ContactNormaliser.Email(e) is not null).WithMessage("Email is not a valid address.");
        RuleFor(x => x.Name).MaximumLength(200);
        RuleFor(x => x.BirthDate)
            .Must(d => d is null || (d.Value.Year >= 1900 && d.Value <= DateOnly.FromDateTime(clock.GetUtcNow().UtcDateTime)))
            .WithMessage("Birth date must be between 1900 and today.");
        RuleFor(x => x.ReferralCode).MaximumLength(16);
        RuleFor(x => x.CardNumber).Must(c => c is null || CardRules.IsValidNumber(c)).WithMessage(CardRules.NumberMessage);
    }
}

public static class MemberEndpoints
{
    private const string GetByIdSql = """
        SELECT id, external_id, phone, email, name, birth_date, referral_code, referred_by_member_id, status, enrolled_at
        FROM members
        WHERE id = @Id
        """;

    private const string FindSql = """
        SELECT id, external_id, phone, email, name, birth_date, referral_code, referred_by_member_id, status, enrolled_at
        FROM members
        WHERE (@Phone IS NULL OR phone = @Phone) AND (@Email IS NULL OR email = @Email) AND (@ExternalId IS NULL OR external_id = @ExternalId)
        ORDER BY id
        LIMIT 2
        """;

    private const string ClashSql = """
        SELECT external_id, phone, email
        FROM members
        WHERE external_id = @ExternalId OR phone = @Phone OR email = @Email
        """;

    private const string ReferrerSql = """
        SELECT id
        FROM members
        WHERE referral_code = @Code
        """;

    private const string InsertSql = """
        INSERT INTO members (external_id, phone, email, name, birth_date, referral_code, referred_by_member_id, status, enrolled_at)
        VALUES (@ExternalId, @Phone, @Email, @Name, @BirthDate, @ReferralCode, @ReferredByMemberId, 'active', @EnrolledAt)
        RETURNING id
        """;

    private const string InsertAccountSql = """
        INSERT INTO point_accounts (member_id, debt_points, version, updated_at)
        VALUES (@MemberId, 0, 0, @Now)
        """;

    public static RouteGroupBuilder MapMembers(this IEndpointRouteBuilder app)
    {
        var group = app.MapGroup("/v1/members").WithTags("Members").RequireAuthorization(Policies.PosOrAdmin);
        group.MapPost("", Enroll).WithName("EnrollMember")
            .WithSummary("Enroll a member (optionally issuing a card). Phone and e-mail are normalised and unique; supports Idempotency-Key.")
            .Validate<EnrollMemberRequest>().ProducesProblem(409).ProducesProblem(422).AcceptsIdempotencyKey();
        group.MapGet("{id:long}", GetMember).WithName("GetMember").WithSummary("One member.").ProducesProblem(404);
        group.MapGet("", FindMembers).WithName("FindMembers")
            .WithSummary("Look a member up by exactly one of phone, email or externalId (exact match after normalising).")
            .ProducesProblem(400);
        return group;
    }

    public static async Task<Results<Created<MemberDto>, Ok<MemberDto>, ProblemHttpResult>> Enroll(
        EnrollMemberRequest body, HttpContext http, Db db, ProgramCache programs, TimeProvider clock, CancellationToken ct)
    {
        var caller = Caller.From(http.User);
        var now = clock.GetUtcNow().UtcDateTime;
        var member = new MemberDto
        {
            ExternalId = string.IsNullOrWhiteSpace(body.ExternalId) ? null : body.ExternalId.Trim(),
            Phone = ContactNormaliser.Phone(body.Phone),
            Email = ContactNormaliser.Email(body.Email),
            Name = body.Name?.Trim(),
            BirthDate = body.BirthDate?.ToString("yyyy-MM-dd", System.Globalization.CultureInfo.InvariantCulture),
            Status = "active",
            EnrolledAt = now,
        };
        try
        {
            var key = Idempotency.KeyFrom(http);
            var hash = Idempotency.HashOf("enroll", body);
            var (result, replayed) = await Transactions.RunAsync(db, async (connection, tx) =>
            {
                if (await Idempotency.FindAsync(db, connection, tx, caller.ClientKey, key, "enroll", hash, ct) is { } stored)
                {
                    return (Json.Deserialize<MemberDto>(stored.ResponseJson), true);
                }
                await RejectClashesAsync(db, connection, tx, member, ct);
                if (!string.IsNullOrWhiteSpace(body.ReferralCode))
                {
                    member.ReferredByMemberId = await connection.ExecuteScalarAsync<long?>(new CommandDefinition(db.Sql(ReferrerSql),
                        new { Code = body.ReferralCode.Trim().ToUpperInvariant() }, tx, cancellationToken: ct))
                        ?? throw DomainRejection.Unprocessable("unknown_referral_code", "No member has this referral code.", "referralCode");
                }
                member.ReferralCode = NewReferralCode();
                member.Id = await connection.ExecuteScalarAsync<long>(new CommandDefinition(db.Sql(InsertSql), new
                {
                    member.ExternalId, member.Phone, member.Email, member.Name, member.BirthDate, member.ReferralCode,
                    member.ReferredByMemberId, member.EnrolledAt,
                }, tx, cancellationToken: ct));
                await connection.ExecuteAsync(new CommandDefinition(db.Sql(InsertAccountSql), new { MemberId = member.Id, Now = now }, tx, cancellationToken: ct));
                if (body.CardNumber is not null)
                {
                    member.CardNumber = (await CardEndpoints.IssueAsync(db, connection, tx, member.Id, body.CardNumber, now, ct)).CardNumber;
                }
                var program = await programs.GetAsync(db, connection, tx, ct);
                if (program.WelcomeBonusPoints > 0)
                {
                    var account = await PointsAccount.OpenAsync(db, connection, tx, member.Id, now, caller.ClientName, ct);
                    account!.Grant(LotSources.WelcomeBonus, LedgerEntryTypes.WelcomeBonus, program.WelcomeBonusPoints,
                        now, program.ExpiryFor(now), null, null, "welcome bonus");
                    await account.SaveAsync();
                }
                await Idempotency.SaveAsync(db, connection, tx, caller.ClientKey, key, "enroll", hash, 201, Json.Serialize(member), now, ct);
                return (member, false);
            }, ct);
            if (replayed)
            {
                Idempotency.MarkReplayed(http);
                return TypedResults.Ok(result);
            }
            return TypedResults.Created($"/v1/members/{result.Id}", result);
        }
        catch (DomainRejection rejection)
        {
            return rejection.ToProblem();
        }
    }

    private static async Task RejectClashesAsync(Db db, DbConnection connection, DbTransaction tx, MemberDto m, CancellationToken ct)
    {
        var clashes = await connection.QueryAsync<MemberDto>(new CommandDefinition(db.Sql(ClashSql),
            new { m.ExternalId, m.Phone, m.Email }, tx, cancellationToken: ct));
        foreach (var c in clashes)
        {
            var field = m.Phone is not null && c.Phone == m.Phone ? "phone"
                : m.Email is not null && c.Email == m.Email ? "email" : "externalId";
            throw new DomainRejection(409, "member_exists", $"A member with this {field} is already enrolled.", field);
        }
    }

    private static string NewReferralCode()
    {
        // No 0/O or 1/I, so codes survive being read aloud at the till.
        const string alphabet = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789";
        return string.Create(8, 0, static (span, _) =>
        {
            for (var i = 0; i < span.Length; i++) span[i] = alphabet[RandomNumberGenerator.GetInt32(alphabet.Length)];
        });
    }

    public static async Task<MemberDto?> FindByIdAsync(Db db, DbConnection connection, DbTransaction? tx, long id, CancellationToken ct) =>
        await connection.QuerySingleOrDefaultAsync<MemberDto>(new CommandDefinition(db.Sql(GetByIdSql), new { Id = id }, tx, cancellationToken: ct));

    public static async Task<Results<Ok<MemberDto>, ProblemHttpResult>> GetMember(long id, Db db, CancellationToken ct)
    {
        await using var connection = await db.OpenAsync(ct);
        var member = await FindByIdAsync(db, connection, null, id, ct);
        return member is null ? Problems.NotFound("Member", "id") : TypedResults.Ok(member);
    }

    public static async Task<Results<Ok<MemberDto[]>, ProblemHttpResult>> FindMembers(string? phone, string? email, string? externalId, Db db, CancellationToken ct)
    {
        var given = new[] { phone, email, externalId }.Count(v => !string.IsNullOrWhiteSpace(v));
        if (new[] { phone, email, externalId }.Any(v => v is not null && !TextGuard.IsClean(v)))
        {
            return Problems.BadRequest("invalid_text", "Query values may not contain control characters.", "externalId");
        }
        if (given != 1) return Problems.BadRequest("one_filter_required", "Give exactly one of phone, email or externalId.", "phone");
        var args = new
        {
            Phone = phone is null ? null : ContactNormaliser.Phone(phone) ?? "\u0000",
            Email = email is null ? null : ContactNormaliser.Email(email) ?? "\u0000",
            ExternalId = string.IsNullOrWhiteSpace(externalId) ? null : externalId.Trim(),
        };
        if (args.Phone == "\u0000") return Problems.BadRequest("invalid_phone", "Phone must be in international form.", "phone");
        if (args.Email == "\u0000") return Problems.BadRequest("invalid_email", "Email is not a valid address.", "email");
        await using var connection = await db.OpenAsync(ct);
        var rows = await connection.QueryAsync<MemberDto>(new CommandDefinition(db.Sql(FindSql), args, cancellationToken: ct));
        return TypedResults.Ok(rows.ToArray());
    }
}
