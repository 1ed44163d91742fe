using System.Data.Common;
using Dapper;
using FluentValidation;
using LoyaltyApi.Features.Merchants;
using LoyaltyApi.Features.Points;
using LoyaltyApi.Infrastructure;
using Microsoft.AspNetCore.Http.HttpResults;

namespace LoyaltyApi.Features.Purchases;

/// <param name="LineNo">1-based position of the line in the original purchase.</param>
/// <param name="Quantity">Units returned.</param>
public sealed record RefundLineRequest(int LineNo, int Quantity);

/// <summary>A refund of a recorded purchase. Give <c>amount</c>, or <c>lines</c>, or neither for a full refund of what remains.</summary>
/// <param name="RefundNumber">The refund receipt's number; (store, refundNumber) dedupes retries.</param>
/// <param name="StoreId">Where the goods came back; defaults to the purchase's store and must belong to the same merchant.</param>
public sealed record RefundRequest(string RefundNumber, DateTimeOffset OccurredAt, long? StoreId = null, decimal? Amount = null, IReadOnlyList<RefundLineRequest>? Lines = null);

public sealed record RefundResponse(
    long RefundId,
    long PurchaseId,
    string RefundNumber,
    string Currency,
    decimal RefundedAmount,
    decimal TotalRefunded,
    long PointsReversed,
    long PointsReturned,
    BalanceSnapshot Balance);

public sealed class RefundValidator : AbstractValidator<RefundRequest>
{
    public RefundValidator(TimeProvider clock)
    {
        RuleFor(x => x.RefundNumber).NotEmpty().MaximumLength(64);
        RuleFor(x => x.StoreId).GreaterThan(0).When(x => x.StoreId is not null);
        RuleFor(x => x.OccurredAt)
            .Must(t => t.UtcDateTime.Year >= 2000).WithMessage("occurredAt is required.")
            .Must(t => t <= clock.GetUtcNow().AddMinutes(5)).WithMessage("occurredAt is in the future.");
        RuleFor(x => x.Amount).GreaterThan(0).LessThanOrEqualTo(Money.MaxAmount).When(x => x.Amount is not null);
        RuleFor(x => x.Lines).Must(l => l is null || l.Count is > 0 and <= PurchaseValidator.MaxLines)
            .WithMessage($"Give 1 to {PurchaseValidator.MaxLines} lines, or leave lines out.");
        RuleFor(x => x).Must(x => x.Amount is null || x.Lines is null).WithName("amount").WithMessage("Give amount or lines, not both.");
        RuleForEach(x => x.Lines).NotNull().WithMessage("A line may not be null.").When(x => x.Lines is { Count: <= PurchaseValidator.MaxLines });
        RuleForEach(x => x.Lines).ChildRules(line =>
        {
            line.RuleFor(l => l.LineNo).GreaterThan(0);
            line.RuleFor(l => l.Quantity).InclusiveBetween(1, 100_000);
        }).When(x => x.Lines is { Count: <= PurchaseValidator.MaxLines });
        RuleFor(x => x.Lines).Must(l => l!.Select(x => x.LineNo).Distinct().Count() == l!.Count)
            .When(x => x.Lines is { Count: <= PurchaseValidator.MaxLines } && x.Lines.All(l => l is not null))
            .WithMessage("Each line may appear once.");
    }
}

public static class RefundEndpoints
{
    private sealed class PurchaseRow
    {
        public long Id { get; set; }
        public long MemberId { get; set; }
        public long MerchantId { get; set; }
        public long StoreId { get; set; }
        public string Currency { get; set; } = "";
        public long TotalMinor { get; set; }
        public long PointsRedeemed { get; set; }
        public long PointsEarned { get; set; }
        public long? EarnLotId { get; set; }
        public long RefundedMinor { get; set; }
        public long PointsReversed { get; set; }
        public long PointsReturned { get; set; }
        /// <summary>Read only for a refund by lines (<see cref="PurchaseWithLinesSql"/>).</summary>
        public string? LinesJson { get; set; }
    }

    private sealed class AllocationRow
    {
        public long Id { get; set; }
        public long Points { get; set; }
        public long ReturnedPoints { get; set; }
        public DateTime ExpiresAt { get; set; }
    }

    private sealed class ExistingRefund
    {
        public long Id { get; set; }
        public long PurchaseId { get; set; }
        public string RequestHash { get; set; } = "";
        public string ResponseJson { get; set; } = "";
    }

    private const string PurchaseColumns = """
        id, member_id, merchant_id, store_id, currency, total_minor, points_redeemed, points_earned, earn_lot_id,
               refunded_minor, points_reversed, points_returned
        """;

    private const string PurchaseSql = "SELECT " + PurchaseColumns + "\nFROM purchases\nWHERE id = @Id";

    // A refund by lines reads the purchase's lines with the rest of it, under the lock.
    private const string PurchaseWithLinesSql = "SELECT " + PurchaseColumns + ", lines_json\nFROM purchases\nWHERE id = @Id";

    private const string ExistingSql = """
        SELECT id, purchase_id, request_hash, response_json
        FROM refunds
        WHERE store_id = @StoreId AND refund_number = @RefundNumber
        """;

    private const string AllocationsSql = """
        SELECT id, points, returned_points, expires_at
        FROM redemption_allocations
        WHERE purchase_id = @PurchaseId
        ORDER BY expires_at DESC, id DESC
        """;

    private const string InsertRefundSql = """
        INSERT INTO refunds (purchase_id, member_id, store_id, refund_number, occurred_at, recorded_at, amount_minor,
            points_reversed, points_returned, request_hash, response_json)
        VALUES (@PurchaseId, @MemberId, @StoreId, @RefundNumber, @OccurredAt, @RecordedAt, @AmountMinor, 0, 0, @RequestHash, '')
        RETURNING id
        """;

    private const string InsertRefundLineSql = """
        INSERT INTO refund_lines (refund_id, line_no, quantity, amount_minor)
        VALUES (@RefundId, @LineNo, @Quantity, @AmountMinor)
        """;

    private const string UpdateAllocationSql = """
        UPDATE redemption_allocations
        SET returned_points = @ReturnedPoints
        WHERE id = @Id
        """;

    // A refund by lines also rewrites the lines it read under the lock (refunded quantities and amounts);
    // any other refund passes no lines and leaves them as they are.
    private const string UpdatePurchaseSql = """
        UPDATE purchases
        SET refunded_minor = @RefundedMinor, points_reversed = @PointsReversed, points_returned = @PointsReturned,
            lines_json = COALESCE(@LinesJson, lines_json)
        WHERE id = @Id
        """;

    private const string CompleteRefundSql = """
        UPDATE refunds
        SET points_reversed = @PointsReversed, points_returned = @PointsReturned, response_json = @ResponseJson
        WHERE id = @Id
        """;

    public static void MapRefunds(this RouteGroupBuilder purchases)
    {
        purchases.MapPost("{id:long}/refunds", RecordRefund).WithName("RecordRefund")
            .WithSummary("Refund a purchase in full, by amount or by lines. Earned points are reversed and redeemed points given back " +
                         "in proportion (rounded down, never beyond what was granted); the balance may go negative.")
            .Validate<RefundRequest>().ProducesProblem(403).ProducesProblem(404).ProducesProblem(409).ProducesProblem(422).AcceptsIdempotencyKey();
    }

    public static async Task<Results<CreatedJson<RefundResponse>, ProblemHttpResult>> RecordRefund(
        long id, RefundRequest body, HttpContext http, Db db, StoreDirectory stores, TimeProvider clock, CancellationToken ct)
    {
        var caller = Caller.From(http.User);
        var now = clock.GetUtcNow().UtcDateTime;
        try
        {
            var key = Idempotency.KeyFrom(http);
            var operation = $"refund:{id}";
            var hash = Idempotency.HashOf(operation, body);
            var (refundId, json, replayed) = await Transactions.RunAsync(db, (connection, tx) =>
                RefundAsync(db, stores, connection, tx, caller, id, body, key, operation, hash, now, ct), ct);
            if (replayed) Idempotency.MarkReplayed(http);
            return new CreatedJson<RefundResponse>($"/v1/purchases/{id}/refunds/{refundId}", json);
        }
        catch (DomainRejection r)
        {
            return r.ToProblem();
        }
    }

    private static async Task<(long RefundId, string Json, bool Replayed)> RefundAsync(Db db, StoreDirectory stores, DbConnection connection, DbTransaction tx, Caller caller,
        long purchaseId, RefundRequest body, string? key, string operation, string hash, DateTime now, CancellationToken ct)
    {
        var purchase = await connection.QuerySingleOrDefaultAsync<PurchaseRow>(new CommandDefinition(db.Sql(PurchaseSql), new { Id = purchaseId }, tx, cancellationToken: ct));
        // Another merchant's purchase is reported as missing.
        if (purchase is null || !(caller.IsAdmin || caller.MerchantId == purchase.MerchantId)) throw DomainRejection.NotFound("Purchase", "id");
        var storeId = body.StoreId ?? purchase.StoreId;
        var store = await stores.AuthorizeAsync(db, connection, tx, caller, storeId, ct);
        if (store.MerchantId != purchase.MerchantId)
        {
            throw DomainRejection.Unprocessable("store_of_other_merchant", "Refunds are taken at a store of the merchant that sold.", "storeId");
        }
        // One round trip: take the member's lock and read the lots, then, under the lock, the refund
        // counters again (a concurrent refund of the same purchase has now either committed and is
        // seen, or not started), any earlier attempt, and what this refund may change. Whether the
        // purchase redeemed or earned points never changes after it is recorded.
        var readLines = body.Lines is not null;
        var readAllocations = purchase.PointsRedeemed > 0;
        var readEarnLot = purchase.EarnLotId is not null;
        var reads = new SqlBatch(db);
        PointsAccount.AddOpenTo(reads, purchase.MemberId, now);
        reads.Add(readLines ? PurchaseWithLinesSql : PurchaseSql, new { Id = purchaseId });
        Idempotency.AddFindTo(reads, caller.ClientKey, key);
        reads.Add(ExistingSql, new { StoreId = storeId, body.RefundNumber });
        if (readAllocations) reads.Add(AllocationsSql, new { PurchaseId = purchaseId });
        if (readEarnLot) PointsAccount.AddLotTo(reads, purchase.EarnLotId!.Value, purchase.MemberId);
        OpenedRead opened;
        Idempotency.Stored? stored;
        ExistingRefund? existing;
        List<ReceiptLine> lines = [];
        List<AllocationRow> allocations = [];
        PointLot? earnLot = null;
        // Every result set is read before any decision, so a rejection never leaves half a batch unread on the connection.
        await using (var grid = await reads.QueryMultipleAsync(connection, tx, ct))
        {
            opened = await PointsAccount.ReadOpenedAsync(grid);
            purchase = await grid.ReadSingleAsync<PurchaseRow>();
            if (readLines) lines = ReceiptLine.FromJson(purchase.LinesJson!);
            stored = await Idempotency.ReadStoredAsync(grid);
            existing = await grid.ReadSingleOrDefaultAsync<ExistingRefund>();
            if (readAllocations) allocations = (await grid.ReadAsync<AllocationRow>()).ToList();
            if (readEarnLot) earnLot = await grid.ReadSingleOrDefaultAsync<PointLot>();
        }
        if (opened.Debt is null) throw DomainRejection.NotFound("Member");
        var account = PointsAccount.Opened(db, connection, tx, purchase.MemberId, now, caller.ClientName, opened, ct);
        if (Idempotency.Replayable(stored, key, operation, hash) is { } replayable)
        {
            return (Json.Deserialize<RefundResponse>(replayable.ResponseJson).RefundId, replayable.ResponseJson, true);
        }
        if (existing is not null)
        {
            if (existing.RequestHash != hash)
            {
                throw new DomainRejection(409, "refund_already_recorded",
                    "This store already recorded this refund number with different contents.", "refundNumber");
            }
            await Idempotency.SaveAsync(db, connection, tx, caller.ClientKey, key, operation, hash, 201, existing.ResponseJson, now, ct);
            return (existing.Id, existing.ResponseJson, true);
        }

        var refundable = purchase.TotalMinor - purchase.RefundedMinor;
        if (refundable <= 0) throw DomainRejection.Unprocessable("already_refunded", "The purchase is already refunded in full.", "id");

        var changedLines = new List<(ReceiptLine Line, int Quantity, long AmountMinor)>();
        long amount;
        if (body.Lines is { } requested)
        {
            for (var i = 0; i < requested.Count; i++)
            {
                var r = requested[i];
                var at = lines.FindIndex(l => l.LineNo == r.LineNo);
                if (at < 0)
                {
                    throw DomainRejection.Unprocessable("unknown_line", $"The purchase has no line {r.LineNo}.", $"lines[{i}].lineNo");
                }
                var line = lines[at];
                if (r.Quantity > line.QuantityLeft)
                {
                    throw DomainRejection.Unprocessable("refund_exceeds_line",
                        $"Line {r.LineNo} has {line.QuantityLeft} units left to refund.", $"lines[{i}].quantity");
                }
                // Cumulative rounding: the last unit returned brings the line to exactly its amount.
                var cumulative = line.AmountMinor * (line.RefundedQuantity + r.Quantity) / line.Quantity;
                changedLines.Add((line, r.Quantity, cumulative - line.RefundedMinor));
                lines[at] = line with { RefundedQuantity = line.RefundedQuantity + r.Quantity, RefundedMinor = cumulative };
            }
            amount = Math.Min(refundable, changedLines.Sum(l => l.AmountMinor));
        }
        else if (body.Amount is { } major)
        {
            if (!Money.FitsCurrency(major, purchase.Currency))
            {
                throw new DomainRejection(400, "validation", "Amount has more decimals than the currency allows.", "amount");
            }
            amount = Money.ToMinor(major, purchase.Currency);
            if (amount > refundable)
            {
                throw DomainRejection.Unprocessable("refund_exceeds_purchase",
                    $"At most {Money.ToMajor(refundable, purchase.Currency)} is left to refund.", "amount");
            }
        }
        else
        {
            amount = refundable;
        }

        var refundId = await connection.ExecuteScalarAsync<long>(new CommandDefinition(db.Sql(InsertRefundSql), new
        {
            PurchaseId = purchaseId, purchase.MemberId, StoreId = storeId, body.RefundNumber, OccurredAt = body.OccurredAt.UtcDateTime,
            RecordedAt = now, AmountMinor = amount, RequestHash = hash,
        }, tx, cancellationToken: ct));
        var writes = new SqlBatch(db);
        foreach (var (line, quantity, lineAmount) in changedLines)
        {
            writes.Add(InsertRefundLineSql, new { RefundId = refundId, line.LineNo, Quantity = quantity, AmountMinor = lineAmount });
        }

        // Proportions are computed on the cumulative refunded share, so rounding never drifts and a
        // full refund reverses exactly what was earned and returns exactly what was redeemed.
        var refundedAfter = purchase.RefundedMinor + amount;
        var reverseTarget = Share(purchase.PointsEarned, refundedAfter, purchase.TotalMinor) - purchase.PointsReversed;
        var returnTarget = Share(purchase.PointsRedeemed, refundedAfter, purchase.TotalMinor) - purchase.PointsReturned;

        long reversed = 0;
        if (reverseTarget > 0 && purchase.EarnLotId is { } lotId)
        {
            reversed = await account.ReverseEarnedAsync(lotId, reverseTarget, purchaseId, refundId, earnLot);
        }
        long returned = 0;
        if (returnTarget > 0)
        {
            foreach (var allocation in allocations)
            {
                var give = Math.Min(returnTarget - returned, allocation.Points - allocation.ReturnedPoints);
                if (give <= 0) continue;
                // Given back with the original lot's expiry: a refund does not extend a point's life.
                account.Grant(LotSources.RedeemReturn, LedgerEntryTypes.RedeemReturn, give, now, allocation.ExpiresAt, purchaseId, refundId, null);
                writes.Add(UpdateAllocationSql, new { allocation.Id, ReturnedPoints = allocation.ReturnedPoints + give });
                returned += give;
                if (returned == returnTarget) break;
            }
        }
        account.Flush(writes);
        var pointsReversed = purchase.PointsReversed + Math.Max(0, reverseTarget);
        var pointsReturned = purchase.PointsReturned + returned;
        writes.Add(UpdatePurchaseSql, new
        {
            Id = purchaseId, RefundedMinor = refundedAfter, PointsReversed = pointsReversed, PointsReturned = pointsReturned,
            LinesJson = changedLines.Count > 0 ? ReceiptLine.ToJson(lines) : null,
        });

        var c = purchase.Currency;
        var response = new RefundResponse(refundId, purchaseId, body.RefundNumber, c, Money.ToMajor(amount, c), Money.ToMajor(refundedAfter, c),
            reversed, returned, account.Snapshot());
        var json = Json.Serialize(response);
        writes.Add(CompleteRefundSql, new { Id = refundId, PointsReversed = reversed, PointsReturned = returned, ResponseJson = json });
        Idempotency.AddSaveTo(writes, caller.ClientKey, key, operation, hash, 201, json, now);
        await writes.ExecuteAndCommitAsync(connection, tx, ct);
        return (refundId, json, false);
    }

    /// <summary>floor(points × part / whole); a zero-value purchase refunds in full.</summary>
    internal static long Share(long points, long part, long whole) =>
        whole == 0 ? points : (long)((Int128)points * part / whole);
}
