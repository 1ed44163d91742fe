using System.Text.Json.Serialization;
using LoyaltyApi.Infrastructure;

namespace LoyaltyApi.Features.Purchases;

/// <summary>
/// A receipt line as its purchase keeps it, in <c>purchases.lines_json</c>: what was sold and how much of it has
/// been refunded. The lines are one document on the purchase, not a row each, because nothing reads a line on its
/// own: the purchase writes them together, and a refund by lines reads and rewrites them together under the
/// member's lock. Amounts are minor units.
/// </summary>
public sealed record ReceiptLine(int LineNo, string Sku, string? Category, int Quantity, long AmountMinor,
    int RefundedQuantity, long RefundedMinor)
{
    [JsonIgnore]
    public int QuantityLeft => Quantity - RefundedQuantity;

    public static string ToJson(IReadOnlyList<ReceiptLine> lines) => Json.Serialize(lines);

    /// <summary>The lines of a basket about to be recorded, none refunded yet.</summary>
    public static string ToJson(IReadOnlyList<BasketLine> lines)
    {
        var kept = new ReceiptLine[lines.Count];
        for (var i = 0; i < kept.Length; i++)
        {
            var l = lines[i];
            kept[i] = new ReceiptLine(l.LineNo, l.Sku, l.Category, l.Quantity, l.AmountMinor, 0, 0);
        }
        return ToJson(kept);
    }

    public static List<ReceiptLine> FromJson(string json) => Json.Deserialize<List<ReceiptLine>>(json);
}
