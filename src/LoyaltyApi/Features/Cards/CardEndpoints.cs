using System.Data.Common;
using System.Security.Cryptography;
using System.Text.RegularExpressions;
using Dapper;
using FluentValidation;
using LoyaltyApi.Features.Members;
using LoyaltyApi.Features.Points;
using LoyaltyApi.Infrastructure;
using Microsoft.AspNetCore.Http.HttpResults;

namespace LoyaltyApi.Features.Cards;

public sealed record IssueCardRequest(string? CardNumber = null);
public sealed record BlockCardRequest(string? Reason = null);
public sealed record ReplaceCardRequest(string? NewCardNumber = null, string? Reason = null);

public sealed class CardDto
{
    public long Id { get; set; }
    public string CardNumber { get; set; } = "";
    public long MemberId { get; set; }
    public string Status { get; set; } = "";
    public DateTime IssuedAt { get; set; }
    public DateTime? BlockedAt { get; set; }
    public string? BlockReason { get; set; }
    public long? ReplacedByCardId { get; set; }
}

/// <summary>What a POS sees when a card is scanned.</summary>
public sealed record CardLookup(string CardNumber, string Status, long MemberId, string? MemberName, BalanceSnapshot Balance);

public static partial class CardRules
{
    public const string NumberMessage = "Card numbers are 6 to 32 digits or capital letters.";

    [GeneratedRegex("^[0-9A-Z]{6,32}$")]
    private static partial Regex Shape();

    public static bool IsValidNumber(string? number) => number is not null && Shape().IsMatch(number);

    /// <summary>16 digits with a Luhn check digit, so a mistyped number is caught at the till.</summary>
    public static string Generate()
    {
        Span<int> d = stackalloc int[16];
        d[0] = 9;
        for (var i = 1; i < 15; i++) d[i] = RandomNumberGenerator.GetInt32(10);
        var sum = 0;
        for (var i = 14; i >= 0; i--)
        {
            var v = d[i];
            if ((14 - i) % 2 == 0) { v *= 2; if (v > 9) v -= 9; }
            sum += v;
        }
        d[15] = (10 - sum % 10) % 10;
        return string.Concat(d.ToArray());
    }
}

public sealed class IssueCardValidator : AbstractValidator<IssueCardRequest>
{
    public IssueCardValidator() => RuleFor(x => x.CardNumber).Must(c => c is null || CardRules.IsValidNumber(c)).WithMessage(CardRules.NumberMessage);
}

public sealed class BlockCardValidator : AbstractValidator<BlockCardRequest>
{
    public BlockCardValidator() => RuleFor(x => x.Reason).MaximumLength(200);
}

public sealed class ReplaceCardValidator : AbstractValidator<ReplaceCardRequest>
{
    public ReplaceCardValidator()
    {
        RuleFor(x => x.NewCardNumber).Must(c => c is null || CardRules.IsValidNumber(c)).WithMessage(CardRules.NumberMessage);
        RuleFor(x => x.Reason).MaximumLength(200);
    }
}

public static class CardEndpoints
{
    private const string InsertSql = """
        INSERT INTO cards (card_number, member_id, status, issued_at)
        VALUES (@CardNumber, @MemberId, 'active', @Now)
        RETURNING id
        """;

    private const string ByNumberSql = """
        SELECT id, card_number, member_id, status, issued_at, blocked_at, block_reason, replaced_by_card_id
        FROM cards
        WHERE card_number = @CardNumber
        """;

    private const string BlockSql = """
        UPDATE cards
        SET status = @Status, blocked_at = @Now, block_reason = @Reason, replaced_by_card_id = @ReplacedBy
        WHERE id = @Id
        """;

    public static RouteGroupBuilder MapCards(this IEndpointRouteBuilder app)
    {
        var group = app.MapGroup("/v1").WithTags("Cards").RequireAuthorization(Policies.PosOrAdmin);
        group.MapPost("members/{id:long}/cards", IssueCard).WithName("IssueCard")
            .WithSummary("Issue a card to a member; without a number, a 16-digit Luhn-checked one is generated.")
            .Validate<IssueCardRequest>().ProducesProblem(404).ProducesProblem(409);
        group.MapGet("cards/{cardNumber}", LookupCard).WithName("LookupCard")
            .WithSummary("POS lookup: the card's member, status and balance.").ProducesProblem(404);
        group.MapPost("cards/{cardNumber}/block", BlockCard).WithName("BlockCard")
            .WithSummary("Block a card (lost or stolen). Blocking twice is harmless.").Validate<BlockCardRequest>().ProducesProblem(404);
        group.MapPost("cards/{cardNumber}/replace", ReplaceCard).WithName("ReplaceCard")
            .WithSummary("Replace a lost card: the old one is retired, the new one belongs to the same member and balance.")
            .Validate<ReplaceCardRequest>().ProducesProblem(404).ProducesProblem(409);
        return group;
    }

    public static async Task<CardDto> IssueAsync(Db db, DbConnection connection, DbTransaction tx, long memberId, string? number, DateTime now, CancellationToken ct)
    {
        var card = new CardDto { CardNumber = number ?? CardRules.Generate(), MemberId = memberId, Status = "active", IssuedAt = now };
        try
        {
            card.Id = await connection.ExecuteScalarAsync<long>(new CommandDefinition(db.Sql(InsertSql),
                new { card.CardNumber, MemberId = memberId, Now = now }, tx, cancellationToken: ct));
        }
        catch (DbException e) when (number is not null && db.Dialect.IsUniqueViolation(e))
        {
            throw new DomainRejection(409, "card_number_taken", "This card number is already issued.", "cardNumber");
        }
        return card;
    }

    public static async Task<CardDto?> FindAsync(Db db, DbConnection connection, DbTransaction? tx, string number, CancellationToken ct) =>
        await connection.QuerySingleOrDefaultAsync<CardDto>(new CommandDefinition(db.Sql(ByNumberSql), new { CardNumber = number }, tx, cancellationToken: ct));

    public static async Task<Results<Created<CardDto>, ProblemHttpResult>> IssueCard(long id, IssueCardRequest body, Db db, TimeProvider clock, CancellationToken ct)
    {
        var now = clock.GetUtcNow().UtcDateTime;
        try
        {
            var card = await Transactions.RunAsync(db, async (connection, tx) =>
            {
                if (await MemberEndpoints.FindByIdAsync(db, connection, tx, id, ct) is null) throw DomainRejection.NotFound("Member", "id");
                return await IssueAsync(db, connection, tx, id, body.CardNumber, now, ct);
            }, ct);
            return TypedResults.Created($"/v1/cards/{card.CardNumber}", card);
        }
        catch (DomainRejection r)
        {
            return r.ToProblem();
        }
    }

    public static async Task<Results<Ok<CardLookup>, ProblemHttpResult>> LookupCard(string cardNumber, Db db, TimeProvider clock, CancellationToken ct)
    {
        await using var connection = await db.OpenAsync(ct);
        var card = await BalanceQueries.CardSnapshotAsync(db, connection, cardNumber, clock.GetUtcNow().UtcDateTime, ct);
        if (card is null) return Problems.NotFound("Card", "cardNumber");
        return TypedResults.Ok(new CardLookup(cardNumber, card.Status, card.MemberId, card.MemberName, card.Balance));
    }

    public static async Task<Results<Ok<CardDto>, ProblemHttpResult>> BlockCard(string cardNumber, BlockCardRequest body, Db db, TimeProvider clock, CancellationToken ct)
    {
        var now = clock.GetUtcNow().UtcDateTime;
        try
        {
            var card = await Transactions.RunAsync(db, async (connection, tx) =>
            {
                var card = await FindAsync(db, connection, tx, cardNumber, ct) ?? throw DomainRejection.NotFound("Card", "cardNumber");
                if (card.Status != "active") return card;
                card.Status = "blocked";
                card.BlockedAt = now;
                card.BlockReason = body.Reason;
                await connection.ExecuteAsync(new CommandDefinition(db.Sql(BlockSql),
                    new { card.Id, card.Status, Now = now, body.Reason, ReplacedBy = (long?)null }, tx, cancellationToken: ct));
                return card;
            }, ct);
            return TypedResults.Ok(card);
        }
        catch (DomainRejection r)
        {
            return r.ToProblem();
        }
    }

    public static async Task<Results<Created<CardDto>, ProblemHttpResult>> ReplaceCard(string cardNumber, ReplaceCardRequest body, Db db, TimeProvider clock, CancellationToken ct)
    {
        var now = clock.GetUtcNow().UtcDateTime;
        try
        {
            var card = await Transactions.RunAsync(db, async (connection, tx) =>
            {
                var old = await FindAsync(db, connection, tx, cardNumber, ct) ?? throw DomainRejection.NotFound("Card", "cardNumber");
                if (old.Status == "replaced")
                {
                    throw new DomainRejection(409, "card_already_replaced", "This card was already replaced.", "cardNumber");
                }
                var fresh = await IssueAsync(db, connection, tx, old.MemberId, body.NewCardNumber, now, ct);
                await connection.ExecuteAsync(new CommandDefinition(db.Sql(BlockSql), new
                {
                    old.Id, Status = "replaced", Now = old.BlockedAt ?? now, Reason = body.Reason ?? old.BlockReason ?? "replaced",
                    ReplacedBy = (long?)fresh.Id,
                }, tx, cancellationToken: ct));
                return fresh;
            }, ct);
            return TypedResults.Created($"/v1/cards/{card.CardNumber}", card);
        }
        catch (DomainRejection r)
        {
            return r.ToProblem();
        }
    }
}
