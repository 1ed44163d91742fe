using LoyaltyApi.Features.ProgramSettings;
using LoyaltyApi.Features.Purchases;
using LoyaltyApi.Infrastructure;
using Xunit;

namespace LoyaltyApi.Tests.Unit;

public sealed class BasketPipelineTests
{
    private static ProgramRules Program(string currency = "USD", int earnBps = 10_000, int pointValue = 1, int shareBps = 5_000) => new()
    {
        Currency = currency, TimeZone = "UTC", EarnRateBps = earnBps, PointValueMinor = pointValue, MaxRedeemShareBps = shareBps,
        ActivationDelayDays = 14, PointsLifetimeDays = 365, ExpiryRounding = "EndOfDay",
    };

    private static Basket Basket(ProgramRules program, long totalMinor, long redeem = 0, long spendable = 0) => new()
    {
        Program = program, TotalMinor = totalMinor, Lines = [new BasketLine(1, "A", null, 1, totalMinor)],
        PointsRequested = redeem, SpendablePoints = spendable,
    };

    [Fact]
    public void EarnedPointsAreRoundedDownOnWhatIsPaid()
    {
        var b = BasketPipeline.Run(Basket(Program(earnBps: 500), totalMinor: 12_399)); // 5 points per 100.00

        Assert.Equal(6, b.PointsEarned); // 123.99 × 0.05 = 6.1995
    }

    [Fact]
    public void PointsPaidAreNotEarnedOn()
    {
        var b = BasketPipeline.Run(Basket(Program(pointValue: 10), totalMinor: 10_000, redeem: 300, spendable: 1000));

        Assert.Equal(3000, b.RedeemedValueMinor);
        Assert.Equal(7000, b.AmountDueMinor);
        Assert.Equal(70, b.PointsEarned);
    }

    [Fact]
    public void TheRedemptionCapIsTheShareOfTheReceiptRoundedDownToWholePoints()
    {
        var b = BasketPipeline.Run(Basket(Program(pointValue: 3, shareBps: 3_333), totalMinor: 1_000, spendable: 10_000));

        Assert.Equal(111, b.MaxRedeemablePoints); // floor(floor(1000 × 0.3333) / 3) = floor(333 / 3)
    }

    [Fact]
    public void TheCapIsAlsoLimitedByTheBalanceAndNeverNegative()
    {
        Assert.Equal(40, BasketPipeline.Run(Basket(Program(), 10_000, spendable: 40)).MaxRedeemablePoints);
        Assert.Equal(0, BasketPipeline.Run(Basket(Program(), 10_000, spendable: -25)).MaxRedeemablePoints);
    }

    [Fact]
    public void ZeroDecimalCurrenciesEarnPerWholeUnit()
    {
        var b = BasketPipeline.Run(Basket(Program(currency: "JPY", earnBps: 100), totalMinor: 1_999)); // 1 point per 100 yen

        Assert.Equal(19, b.PointsEarned);
    }

    [Fact]
    public void AskingForMorePointsThanTheMemberHasIsRejected()
    {
        var e = Assert.Throws<DomainRejection>(() => BasketPipeline.Run(Basket(Program(), 10_000, redeem: 51, spendable: 50)));

        Assert.Equal("insufficient_points", e.Code);
        Assert.Equal("pointsToRedeem", e.Field);
    }
}

public sealed class RefundShareTests
{
    [Theory]
    [InlineData(99, 3333, 9999, 33)]
    [InlineData(10, 333, 1000, 3)]
    [InlineData(10, 1000, 1000, 10)]
    [InlineData(7, 0, 0, 7)]
    [InlineData(1, 999, 1000, 0)]
    public void ReversalIsTheRoundedDownShareOfTheCumulativeRefund(long points, long part, long whole, long expected) =>
        Assert.Equal(expected, RefundEndpoints.Share(points, part, whole));
}

public sealed class ExpiryTests
{
    private static ProgramRules Program(string rounding, int lifetime = 365, string zone = "Europe/Berlin") => new()
    {
        Currency = "EUR", TimeZone = zone, EarnRateBps = 10_000, PointValueMinor = 1, MaxRedeemShareBps = 5_000,
        PointsLifetimeDays = lifetime, ExpiryRounding = rounding,
    };

    [Fact]
    public void EndOfDayMeansTheFirstInstantOfTheNextLocalDay()
    {
        var availableAt = new DateTime(2026, 6, 10, 21, 30, 0, DateTimeKind.Utc); // 23:30 in Berlin (UTC+2)

        var expiry = Program("EndOfDay").ExpiryFor(availableAt);

        Assert.Equal(new DateTime(2027, 6, 10, 22, 0, 0, DateTimeKind.Utc), expiry); // 2027-06-11 00:00 Berlin
    }

    [Fact]
    public void EndOfMonthRoundsToTheStartOfTheNextMonth()
    {
        var expiry = Program("EndOfMonth", lifetime: 30, zone: "UTC").ExpiryFor(new DateTime(2026, 1, 15, 8, 0, 0, DateTimeKind.Utc));

        Assert.Equal(new DateTime(2026, 3, 1, 0, 0, 0, DateTimeKind.Utc), expiry);
    }

    [Fact]
    public void AZeroLifetimeNeverExpires() =>
        Assert.Equal(ProgramRules.NeverExpires, Program("EndOfDay", lifetime: 0).ExpiryFor(DateTime.UtcNow));
}

public sealed class MoneyTests
{
    [Theory]
    [InlineData("USD", 2)]
    [InlineData("JPY", 0)]
    [InlineData("KWD", 3)]
    public void MinorUnitsFollowIso4217(string currency, int digits) => Assert.Equal(digits, Money.Digits(currency));

    [Fact]
    public void AmountsWithTooManyDecimalsDoNotFit()
    {
        Assert.True(Money.FitsCurrency(10.10m, "USD"));
        Assert.False(Money.FitsCurrency(10.101m, "USD"));
        Assert.False(Money.FitsCurrency(1.5m, "JPY"));
        Assert.Equal(1234, Money.ToMinor(12.34m, "USD"));
        Assert.Equal(12.34m, Money.ToMajor(1234, "USD"));
    }
}
