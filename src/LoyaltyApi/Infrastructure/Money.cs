namespace LoyaltyApi.Infrastructure;

/// <summary>ISO 4217 minor-unit handling: JSON carries decimals, storage carries integers.</summary>
public static class Money
{
    private static readonly HashSet<string> ZeroDigit = ["BIF", "CLP", "DJF", "GNF", "ISK", "JPY", "KMF", "KRW", "PYG", "RWF", "UGX", "UYI", "VND", "VUV", "XAF", "XOF", "XPF"];
    private static readonly HashSet<string> ThreeDigit = ["BHD", "IQD", "JOD", "KWD", "LYD", "OMR", "TND"];

    /// <summary>The largest amount we accept, in major units; keeps every product of amounts and rates inside a long.</summary>
    public const decimal MaxAmount = 1_000_000_000m;

    public static int Digits(string currency) =>
        ZeroDigit.Contains(currency) ? 0 : ThreeDigit.Contains(currency) ? 3 : 2;

    public static bool IsCurrencyCode(string? currency) =>
        currency is { Length: 3 } && currency.All(c => c is >= 'A' and <= 'Z');

    public static bool FitsCurrency(decimal amount, string? currency)
    {
        if (!IsCurrencyCode(currency)) return true; // the currency rule reports it
        var scaled = amount * Pow10(Digits(currency!));
        return scaled == decimal.Truncate(scaled);
    }

    public static long ToMinor(decimal amount, string currency) =>
        checked((long)(amount * Pow10(Digits(currency))));

    public static decimal ToMajor(long minor, string currency) =>
        minor / (decimal)Pow10(Digits(currency));

    private static long Pow10(int digits) => digits switch { 0 => 1, 2 => 100, 3 => 1000, _ => throw new ArgumentOutOfRangeException(nameof(digits)) };
}
