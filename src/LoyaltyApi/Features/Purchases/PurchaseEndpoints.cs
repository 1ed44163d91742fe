using System.Data.Common;
using Dapper;
using FluentValidation;
using LoyaltyApi.Features.Cards;
using LoyaltyApi.Features.Merchants;
using LoyaltyApi.Features.Points;
using LoyaltyApi.Features.ProgramSettings;
using LoyaltyApi.Infrastructure;
using Microsoft.AspNetCore.Http.HttpResults;

namespace LoyaltyApi.Features.Purchases;

/// <param name="Sku">Item code.</param>
/// <param name="Category">Item category, for later earning rules.</param>
/// <param name="Quantity">Whole units.</param>
/// <param name="Amount">The line's total in the program currency, after line discounts.</param>
public sealed record PurchaseLineRequest(string Sku, int Quantity, decimal Amount, string? Category = null);

/// <param name="StoreId">The store the receipt was printed at; (store, receiptNumber) is the business key that dedupes retries.</param>
/// <param name="CardNumber">The card that was scanned; give this or memberId.</param>
/// <param name="OccurredAt">When the sale happened (the POS may replay hours later); any offset, stored as UTC.</param>
/// <param name="Total">Receipt total before points; must equal the sum of the lines.</param>
/// <param name="PointsToRedeem">Points to pay part of this receipt with; 0 for none.</param>
public sealed record PurchaseRequest(
    long StoreId,
    string ReceiptNumber,
    DateTimeOffset OccurredAt,
    string Currency,
    decimal Total,
    IReadOnlyList<PurchaseLineRequest> Lines,
    string? CardNumber = null,
    long? MemberId = null,
    long PointsToRedeem = 0);

public sealed record QuoteResponse(
    long MemberId,
    string Currency,
    long PointsToEarn,
    long MaxRedeemablePoints,
    decimal MaxRedeemableValue,
    long PointsToRedeem,
    decimal RedeemedValue,
    decimal AmountDue,
    BalanceSnapshot Balance);

public sealed record PurchaseResponse(
    long PurchaseId,
    long MemberId,
    long StoreId,
    string ReceiptNumber,
    string Currency,
    decimal Total,
    long PointsEarned,
    long PointsRedeemed,
    decimal RedeemedValue,
    decimal AmountDue,
    DateTime? PointsAvailableAt,
    DateTime? PointsExpireAt,
    BalanceSnapshot Balance);

public sealed class PurchaseView
{
    public long Id { get; set; }
    public long MemberId { get; set; }
    public long MerchantId { get; set; }
    public long StoreId { get; set; }
    public string ReceiptNumber { get; set; } = "";
    public DateTime OccurredAt { get; set; }
    public DateTime RecordedAt { get; set; }
    public string Currency { get; set; } = "";
    public decimal Total { get; set; }
    public decimal AmountDue { get; set; }
    public decimal Refunded { get; set; }
    public long PointsEarned { get; set; }
    public long PointsRedeemed { get; set; }
    public long PointsReversed { get; set; }
    public long PointsReturned { get; set; }
}

public sealed class PurchaseValidator : AbstractValidator<PurchaseRequest>
{
    public const int MaxLines = 500;

    public PurchaseValidator(TimeProvider clock)
    {
        RuleFor(x => x.StoreId).GreaterThan(0);
        RuleFor(x => x.ReceiptNumber).NotEmpty().MaximumLength(64);
        RuleFor(x => x.CardNumber).Must(CardRules.IsValidNumber).When(x => x.CardNumber is not null).WithMessage(CardRules.NumberMessage);
        RuleFor(x => x.MemberId).GreaterThan(0).When(x => x.MemberId is not null);
        RuleFor(x => x).Must(x => (x.CardNumber is null) != (x.MemberId is null))
            .WithName("cardNumber").WithMessage("Give exactly one of cardNumber or memberId.");
        RuleFor(x => x.OccurredAt)
            .Must(t => t.UtcDateTime.Year >= 2000).WithMessage("occurredAt is required.")
            .Must(t => t <= clock.GetUtcNow().AddMinutes(5)).WithMessage("occurredAt is in the future.");
        RuleFor(x => x.Currency).Must(Money.IsCurrencyCode).WithMessage("Currency must be an ISO 4217 code such as USD.");
        RuleFor(x => x.Total).InclusiveBetween(0, Money.MaxAmount)
            .Must((x, v) => Money.FitsCurrency(v, x.Currency)).WithMessage("Total has more decimals than the currency allows.");
        RuleFor(x => x.PointsToRedeem).InclusiveBetween(0, 1_000_000_000);
        RuleFor(x => x.Lines).NotNull().Must(l => l is { Count: > 0 and <= MaxLines })
            .WithMessage($"A purchase has 1 to {MaxLines} lines.");
        // One rule walks the lines. FluentValidation's per-line rules (RuleForEach, ChildRules) build a
        // validation context per line and per rule: for a three-line basket that was two thirds of the
        // validator's time and nearly all of its allocations, on every quote and every purchase.
        RuleFor(x => x.Lines).Custom((lines, context) => CheckLines(context.InstanceToValidate, context))
            .When(x => x.Lines is { Count: > 0 and <= MaxLines });
    }

    private static readonly string LineAmountRange =
        string.Create(System.Globalization.CultureInfo.InvariantCulture, $"amount must be 0 to {Money.MaxAmount}.");

    private static void CheckLines(PurchaseRequest purchase, ValidationContext<PurchaseRequest> context)
    {
        var lines = purchase.Lines;
        var sum = 0m;
        var allPresent = true;
        for (var i = 0; i < lines.Count; i++)
        {
            var line = lines[i];
            if (line is null)
            {
                context.AddFailure($"lines[{i}]", "A line may not be null.");
                allPresent = false;
                continue;
            }
            if (string.IsNullOrWhiteSpace(line.Sku)) context.AddFailure($"lines[{i}].sku", "sku is required.");
            else if (line.Sku.Length > 64) context.AddFailure($"lines[{i}].sku", "sku is at most 64 characters.");
            if (line.Category is { Length: > 64 }) context.AddFailure($"lines[{i}].category", "category is at most 64 characters.");
            if (line.Quantity is < 1 or > 100_000) context.AddFailure($"lines[{i}].quantity", "quantity must be 1 to 100000.");
            if (line.Amount is < 0 or > Money.MaxAmount) context.AddFailure($"lines[{i}].amount", LineAmountRange);
            else if (!Money.FitsCurrency(line.Amount, purchase.Currency))
            {
                context.AddFailure($"lines[{i}].amount", "Line amount has more decimals than the currency allows.");
            }
            sum += line.Amount;
        }
        if (allPresent && sum != purchase.Total) context.AddFailure("lines", "The lines do not add up to the total.");
    }
}

public static class PurchaseEndpoints
{
    private sealed class ExistingPurchase
    {
        public long Id { get; set; }
        public string RequestHash { get; set; } = "";
        public string ResponseJson { get; set; } = "";
    }

    private const string ExistingSql = """
        SELECT id, request_hash, response_json
        FROM purchases
        WHERE store_id = @StoreId AND receipt_number = @ReceiptNumber
        """;

    private sealed class PurchaseRow
    {
        public long Id { get; set; }
        public long MemberId { get; set; }
        public long MerchantId { get; set; }
        public long StoreId { get; set; }
        public string ReceiptNumber { get; set; } = "";
        public DateTime OccurredAt { get; set; }
        public DateTime RecordedAt { get; set; }
        public string Currency { get; set; } = "";
        public long TotalMinor { get; set; }
        public long AmountDueMinor { get; set; }
        public long RefundedMinor { get; set; }
        public long PointsEarned { get; set; }
        public long PointsRedeemed { get; set; }
        public long PointsReversed { get; set; }
        public long PointsReturned { get; set; }
    }

    private const string GetPurchaseSql = """
        SELECT id, member_id, merchant_id, store_id, receipt_number, occurred_at, recorded_at, currency, total_minor,
               amount_due_minor, refunded_minor, points_earned, points_redeemed, points_reversed, points_returned
        FROM purchases
        WHERE id = @Id
        """;

    // Ids are taken in the first round trip, so the write batch needs nothing back from the database.
    private sealed class NewIds
    {
        public long PurchaseId { get; set; }
        public long LotId { get; set; }
    }

    private const string NextIdsSql = """
        SELECT {next purchases} AS purchase_id, {next point_lots} AS lot_id
        """;

    private const string InsertPurchaseSql = """
        INSERT INTO purchases (id, member_id, merchant_id, store_id, receipt_number, card_id, occurred_at, recorded_at, currency,
            total_minor, amount_due_minor, points_redeemed, redeemed_value_minor, points_earned, earn_lot_id, refunded_minor,
            points_reversed, points_returned, lines_json, request_hash, response_json)
        VALUES (@Id, @MemberId, @MerchantId, @StoreId, @ReceiptNumber, @CardId, @OccurredAt, @RecordedAt, @Currency,
            @TotalMinor, @AmountDueMinor, @PointsRedeemed, @RedeemedValueMinor, @PointsEarned, @EarnLotId, 0,
            0, 0, @LinesJson, @RequestHash, @ResponseJson)
        """;

    private const string InsertAllocationSql = """
        INSERT INTO redemption_allocations (member_id, purchase_id, lot_id, points, returned_points, expires_at)
        VALUES (@MemberId, @PurchaseId, @LotId, @Points, 0, @ExpiresAt)
        """;

    public static RouteGroupBuilder MapPurchases(this IEndpointRouteBuilder app)
    {
        var group = app.MapGroup("/v1/purchases").WithTags("Purchases").RequireAuthorization(Policies.PosOrAdmin);
        group.MapPost("quote", Quote).WithName("QuotePurchase")
            .WithSummary("What a purchase would earn and how much of it points could pay. No side effects.")
            .Validate<PurchaseRequest>().ProducesProblem(403).ProducesProblem(404).ProducesProblem(422);
        group.MapPost("", RecordPurchase).WithName("RecordPurchase")
            .WithSummary("Record a receipt: redeem points (soonest-expiring lots first) and earn points, in one transaction. " +
                         "Retries with the same store + receiptNumber or Idempotency-Key replay the first response; a different body is a 409.")
            .Validate<PurchaseRequest>().ProducesProblem(403).ProducesProblem(404).ProducesProblem(409).ProducesProblem(422).AcceptsIdempotencyKey();
        group.MapGet("{id:long}", GetPurchase).WithName("GetPurchase")
            .WithSummary("A recorded purchase with what has been refunded so far. A pos key sees only its merchant's purchases.")
            .ProducesProblem(404);
        group.MapRefunds();
        return group;
    }

    /// <summary>An unknown, blocked or replaced card is refused.</summary>
    private static void RejectUnusable(string? cardStatus)
    {
        if (cardStatus is null) throw DomainRejection.Unprocessable("unknown_card", "No card has this number.", "cardNumber");
        if (cardStatus != "active")
        {
            throw DomainRejection.Unprocessable("card_blocked", $"The card is {cardStatus} and cannot be used.", "cardNumber");
        }
    }

    private static Basket BuildBasket(ProgramRules program, PurchaseRequest body, long spendable)
    {
        if (body.Currency != program.Currency)
        {
            throw DomainRejection.Unprocessable("currency_mismatch", $"The program runs in {program.Currency}.", "currency");
        }
        var lines = body.Lines.Select((l, i) => new BasketLine(i + 1, l.Sku, l.Category, l.Quantity, Money.ToMinor(l.Amount, body.Currency))).ToArray();
        return new Basket
        {
            Program = program,
            TotalMinor = Money.ToMinor(body.Total, body.Currency),
            Lines = lines,
            PointsRequested = body.PointsToRedeem,
            SpendablePoints = spendable,
        };
    }

    public static async Task<Results<Ok<PurchaseView>, ProblemHttpResult>> GetPurchase(long id, HttpContext http, Db db, CancellationToken ct)
    {
        var caller = Caller.From(http.User);
        await using var connection = await db.OpenAsync(ct);
        var p = await connection.QuerySingleOrDefaultAsync<PurchaseRow>(new CommandDefinition(db.Sql(GetPurchaseSql), new { Id = id }, cancellationToken: ct));
        // Another merchant's purchase, or another store's for a store-scoped key, is reported as missing.
        if (p is null || !caller.MayActForStore(p.MerchantId, p.StoreId)) return Problems.NotFound("Purchase", "id");
        return TypedResults.Ok(new PurchaseView
        {
            Id = p.Id, MemberId = p.MemberId, MerchantId = p.MerchantId, StoreId = p.StoreId, ReceiptNumber = p.ReceiptNumber,
            OccurredAt = p.OccurredAt, RecordedAt = p.RecordedAt, Currency = p.Currency,
            Total = Money.ToMajor(p.TotalMinor, p.Currency), AmountDue = Money.ToMajor(p.AmountDueMinor, p.Currency),
            Refunded = Money.ToMajor(p.RefundedMinor, p.Currency), PointsEarned = p.PointsEarned, PointsRedeemed = p.PointsRedeemed,
            PointsReversed = p.PointsReversed, PointsReturned = p.PointsReturned,
        });
    }

    public static async Task<Results<Ok<QuoteResponse>, ProblemHttpResult>> Quote(PurchaseRequest body, HttpContext http, Db db, ProgramCache programs, StoreDirectory stores, TimeProvider clock, CancellationToken ct)
    {
        var caller = Caller.From(http.User);
        var now = clock.GetUtcNow().UtcDateTime;
        try
        {
            await using var connection = await db.OpenAsync(ct);
            await stores.AuthorizeAsync(db, connection, null, caller, body.StoreId, ct);
            var program = await programs.GetAsync(db, connection, null, ct);
            long memberId;
            BalanceSnapshot? balance;
            if (body.CardNumber is { } number)
            {
                var card = await BalanceQueries.CardBalanceAsync(db, connection, number, now, ct);
                RejectUnusable(card?.Status);
                (memberId, balance) = (card!.MemberId, card.Balance);
            }
            else
            {
                memberId = body.MemberId!.Value;
                balance = await BalanceQueries.SnapshotAsync(db, connection, memberId, now, ct)
                          ?? throw DomainRejection.Unprocessable("unknown_member", "No member has this id.", "memberId");
            }
            var b = BasketPipeline.Run(BuildBasket(program, body, balance.Available));
            var c = program.Currency;
            return TypedResults.Ok(new QuoteResponse(memberId, c, b.PointsEarned, b.MaxRedeemablePoints,
                Money.ToMajor(b.MaxRedeemablePoints * program.PointValueMinor, c), b.PointsRedeemed,
                Money.ToMajor(b.RedeemedValueMinor, c), Money.ToMajor(b.AmountDueMinor, c), balance));
        }
        catch (DomainRejection r)
        {
            return r.ToProblem();
        }
    }

    public static async Task<Results<CreatedJson<PurchaseResponse>, ProblemHttpResult>> RecordPurchase(
        PurchaseRequest body, HttpContext http, Db db, ProgramCache programs, StoreDirectory stores, TimeProvider clock, CancellationToken ct)
    {
        var caller = Caller.From(http.User);
        var now = clock.GetUtcNow().UtcDateTime;
        try
        {
            var key = Idempotency.KeyFrom(http);
            var hash = Idempotency.HashOf("purchase", body);
            // The first attempt does not look for an earlier one: the unique indexes on (store, receipt) and
            // on the key refuse a second write, and a refused write, or a request the first attempt would
            // reject, is attempted again with the look-ups (a retry may replay even if, say, the card was
            // blocked since). A first-time purchase, nearly every one, runs two statements fewer.
            var outcome = await Transactions.RunAsync(db, (connection, tx, attempt) =>
                RecordAsync(db, programs, stores, connection, tx, caller, body, key, hash, now, lookForEarlier: attempt > 1, ct), ct)
                ?? await Transactions.RunAsync(db, (connection, tx) =>
                RecordAsync(db, programs, stores, connection, tx, caller, body, key, hash, now, lookForEarlier: true, ct), ct)
                ?? throw new InvalidOperationException("A purchase that looked for earlier attempts came back undecided.");
            var (purchaseId, json, replayed) = outcome;
            if (replayed) Idempotency.MarkReplayed(http);
            return new CreatedJson<PurchaseResponse>($"/v1/purchases/{purchaseId}", json);
        }
        catch (DomainRejection r)
        {
            return r.ToProblem();
        }
    }

    /// <summary>
    /// The purchase's id, its response as JSON and whether it was replayed; null when <paramref name="lookForEarlier"/> is false and the
    /// request would be rejected: only a look for an earlier attempt can tell a rejection from a replay.
    /// </summary>
    private static async Task<(long PurchaseId, string Json, bool Replayed)?> RecordAsync(Db db, ProgramCache programs, StoreDirectory stores, DbConnection connection,
        DbTransaction tx, Caller caller, PurchaseRequest body, string? key, string hash, DateTime now, bool lookForEarlier, CancellationToken ct)
    {
        var store = await stores.AuthorizeAsync(db, connection, tx, caller, body.StoreId, ct);
        var program = await programs.GetAsync(db, connection, tx, ct);

        // One round trip: find the card, take the member's lock, read the lots and, on a retry, look for an
        // earlier attempt. Dedupe after the lock: a concurrent twin has then either committed or not started.
        // A purchase that spends no points reads only the live lots' totals.
        var spends = body.PointsToRedeem > 0;
        var reads = new SqlBatch(db);
        if (body.CardNumber is { } number)
        {
            PointsAccount.AddOpenByCardTo(reads, number, now, withLots: spends);
        }
        else
        {
            PointsAccount.AddOpenTo(reads, body.MemberId!.Value, now, withLots: spends);
        }
        if (lookForEarlier)
        {
            Idempotency.AddFindTo(reads, caller.ClientKey, key);
            reads.Add(ExistingSql, new { body.StoreId, body.ReceiptNumber });
        }
        reads.Add(NextIdsSql, new { });
        CardHolder? card = null;
        OpenedRead opened;
        Idempotency.Stored? stored = null;
        ExistingPurchase? existing = null;
        NewIds ids;
        // Every result set is read before any decision, so a rejection never leaves half a batch unread on the connection.
        await using (var grid = await reads.QueryMultipleAsync(connection, tx, ct))
        {
            if (body.CardNumber is null) opened = await PointsAccount.ReadOpenedAsync(grid, withLots: spends);
            else (card, opened) = await PointsAccount.ReadOpenedByCardAsync(grid, withLots: spends);
            if (lookForEarlier)
            {
                stored = await Idempotency.ReadStoredAsync(grid);
                existing = await grid.ReadSingleOrDefaultAsync<ExistingPurchase>();
            }
            ids = await grid.ReadSingleAsync<NewIds>();
        }
        try
        {
            // A retry replays the first response even if the card was blocked since. The same body names the
            // same store and receipt, so the response is the purchase's own (records written before kept a copy);
            // purchases are never deleted, so a record always finds its purchase.
            if (Idempotency.Replayable(stored, key, "purchase", hash) is { } replayable)
            {
                if (existing is { ResponseJson.Length: > 0 } && existing.RequestHash == hash) return (existing.Id, existing.ResponseJson, true);
                if (replayable.ResponseJson.Length == 0) throw new InvalidOperationException("An idempotency record's purchase is missing.");
                return (Json.Deserialize<PurchaseResponse>(replayable.ResponseJson).PurchaseId, replayable.ResponseJson, true);
            }
            long memberId;
            long? cardId = null;
            if (existing is null || existing.RequestHash != hash)
            {
                memberId = body.MemberId ?? 0;
                if (body.CardNumber is not null)
                {
                    RejectUnusable(card?.Status);
                    (memberId, cardId) = (card!.MemberId, card.CardId);
                }
                if (opened.Debt is null) throw DomainRejection.Unprocessable("unknown_member", "No member has this id.", "memberId");
            }
            else
            {
                memberId = 0;
            }
            var account = PointsAccount.Opened(db, connection, tx, memberId, now, caller.ClientName, opened, ct);
            if (existing is not null)
            {
                if (existing.RequestHash != hash)
                {
                    throw new DomainRejection(409, "receipt_already_recorded",
                        "This store already recorded this receipt number with different contents.", "receiptNumber");
                }
                var replay = new SqlBatch(db);
                Idempotency.AddSaveTo(replay, caller.ClientKey, key, "purchase", hash, 201, Idempotency.NoStoredResponse, now);
                await replay.ExecuteAsync(connection, tx, ct);
                return (existing.Id, existing.ResponseJson, true);
            }

            var basket = BasketPipeline.Run(BuildBasket(program, body, account.Available));
            var occurredAt = body.OccurredAt.UtcDateTime;
            var purchaseId = ids.PurchaseId;
            List<LotAllocation> allocations = [];
            if (basket.PointsRedeemed > 0)
            {
                allocations = account.Spend(LedgerEntryTypes.Redeem, basket.PointsRedeemed, purchaseId, null, "pointsToRedeem");
            }
            PointLot? earned = null;
            if (basket.PointsEarned > 0)
            {
                var availableAt = occurredAt.AddDays(program.ActivationDelayDays);
                earned = account.Grant(LotSources.Purchase, LedgerEntryTypes.Earn, basket.PointsEarned, availableAt,
                    program.ExpiryFor(availableAt), purchaseId, null, null, ids.LotId);
            }

            var c = program.Currency;
            var response = new PurchaseResponse(purchaseId, memberId, body.StoreId, body.ReceiptNumber, c, body.Total,
                basket.PointsEarned, basket.PointsRedeemed, Money.ToMajor(basket.RedeemedValueMinor, c), Money.ToMajor(basket.AmountDueMinor, c),
                earned?.AvailableAt, earned?.ExpiresAt, account.Snapshot());
            var json = Json.Serialize(response);

            // Everything, and the commit, in one round trip.
            var writes = new SqlBatch(db);
            writes.Add(InsertPurchaseSql, new
            {
                Id = purchaseId, MemberId = memberId, store.MerchantId, body.StoreId, body.ReceiptNumber, CardId = cardId, OccurredAt = occurredAt,
                RecordedAt = now, body.Currency, basket.TotalMinor, basket.AmountDueMinor, basket.PointsRedeemed,
                basket.RedeemedValueMinor, basket.PointsEarned, EarnLotId = earned?.Id, LinesJson = ReceiptLine.ToJson(basket.Lines),
                RequestHash = hash, ResponseJson = json,
            });
            writes.AddRows(InsertAllocationSql, allocations.Select(u => new
            {
                MemberId = memberId, PurchaseId = purchaseId, LotId = u.Lot.Id, u.Points, u.Lot.ExpiresAt,
            }).ToArray());
            account.Flush(writes);
            Idempotency.AddSaveTo(writes, caller.ClientKey, key, "purchase", hash, 201, Idempotency.NoStoredResponse, now);
            await writes.ExecuteAndCommitAsync(connection, tx, ct);
            return (purchaseId, json, false);
        }
        catch (DomainRejection) when (!lookForEarlier)
        {
            return null;
        }
    }
}
