using LoyaltyApi.Features.ProgramSettings;
using LoyaltyApi.Infrastructure;

namespace LoyaltyApi.Features.Purchases;

public sealed record BasketLine(int LineNo, string Sku, string? Category, int Quantity, long AmountMinor);

/// <summary>
/// The basket as it moves through the steps. Quote and purchase run the same steps over it;
/// only the purchase then writes the outcome. Amounts are minor units, points are integers.
/// </summary>
public sealed class Basket
{
    public required ProgramRules Program { get; init; }
    public required long TotalMinor { get; init; }
    public required IReadOnlyList<BasketLine> Lines { get; init; }
    public long PointsRequested { get; init; }
    /// <summary>The member's spendable points now (available lots less debt).</summary>
    public long SpendablePoints { get; init; }

    /// <summary>Discounts applied by earlier mechanics (discount cards, tiers) before points are used.</summary>
    public long DiscountMinor { get; set; }
    public long MaxRedeemablePoints { get; set; }
    public long PointsRedeemed { get; set; }
    public long RedeemedValueMinor { get; set; }
    public long EarnBaseMinor { get; set; }
    public long PointsEarned { get; set; }

    public long PayableBeforePointsMinor => TotalMinor - DiscountMinor;
    public long AmountDueMinor => TotalMinor - DiscountMinor - RedeemedValueMinor;
}

/// <summary>One mechanic's effect on the basket. New mechanics join the pipeline by adding a step.</summary>
public interface IBasketStep
{
    void Apply(Basket basket);
}

public static class BasketPipeline
{
    /// <summary>The documented order: discounts (none yet) → redeem points → earn on what is still paid.</summary>
    public static readonly IReadOnlyList<IBasketStep> Steps = [new RedeemPointsStep(), new EarnPointsStep()];

    public static Basket Run(Basket basket)
    {
        foreach (var step in Steps) step.Apply(basket);
        return basket;
    }
}

/// <summary>
/// Points pay at most the program's share of what is payable after discounts, and never more than
/// the member can spend. The cap is rounded down: floor(payable × share) in minor units, then down to whole points.
/// </summary>
public sealed class RedeemPointsStep : IBasketStep
{
    public void Apply(Basket b)
    {
        var capValue = (long)((Int128)b.PayableBeforePointsMinor * b.Program.MaxRedeemShareBps / 10_000);
        var capPoints = capValue / b.Program.PointValueMinor;
        b.MaxRedeemablePoints = Math.Max(0, Math.Min(b.SpendablePoints, capPoints));
        if (b.PointsRequested == 0) return;
        if (b.PointsRequested > b.SpendablePoints)
        {
            throw DomainRejection.Unprocessable("insufficient_points",
                $"The member can spend {Math.Max(0, b.SpendablePoints)} points; {b.PointsRequested} were requested.", "pointsToRedeem");
        }
        if (b.PointsRequested > capPoints)
        {
            throw DomainRejection.Unprocessable("redemption_cap_exceeded",
                $"Points may pay at most {b.Program.MaxRedeemShareBps / 100m}% of this receipt: {capPoints} points.", "pointsToRedeem");
        }
        b.PointsRedeemed = b.PointsRequested;
        b.RedeemedValueMinor = b.PointsRequested * b.Program.PointValueMinor;
    }
}

/// <summary>
/// Points are earned on what the member actually pays (after discounts and after points), rounded
/// down: floor(paid × earnRateBps / 10000) per major unit of currency.
/// </summary>
public sealed class EarnPointsStep : IBasketStep
{
    public void Apply(Basket b)
    {
        b.EarnBaseMinor = Math.Max(0, b.AmountDueMinor);
        var minorPerMajor = Money.Digits(b.Program.Currency) switch { 0 => 1, 3 => 1000, _ => 100 };
        b.PointsEarned = (long)((Int128)b.EarnBaseMinor * b.Program.EarnRateBps / (10_000L * minorPerMajor));
    }
}
