using System.Globalization;
using System.Text;
using Microsoft.AspNetCore.Http.HttpResults;

namespace LoyaltyApi.Infrastructure;

/// <summary>
/// Keyset paging shared by every list: a page holds at most <see cref="MaxSize"/> rows, and the cursor is
/// the opaque position of the last row returned (the row's id, tagged with the list it belongs to so a
/// cursor from one list is refused by another). Keyset rather than offset, so a page costs the same on
/// the thousandth page as on the first, and rows written while a client pages never shift a page: no row
/// is shown twice or skipped.
/// </summary>
public static class Paging
{
    public const int DefaultSize = 20;
    public const int MaxSize = 100;

    /// <summary>Reads limit and cursor; null when both are valid, else the 400 to answer with.</summary>
    /// <param name="position">The id after which (or before which, for newest-first lists) the page starts; null for the first page.</param>
    public static ProblemHttpResult? TryRead(string list, string? cursor, int? limit, out long? position, out int take)
    {
        position = null;
        take = limit ?? DefaultSize;
        if (take is < 1 or > MaxSize) return Problems.BadRequest("invalid_limit", $"limit must be between 1 and {MaxSize}.", "limit");
        if (cursor is null) return null;
        if (!TryDecode(list, cursor, out var id)) return Problems.BadRequest("invalid_cursor", "The cursor is not one this list returned.", "cursor");
        position = id;
        return null;
    }

    /// <summary>
    /// Trims the one extra row the query was asked for (take + 1) and returns the cursor to the next
    /// page, or null on the last page.
    /// </summary>
    public static string? Cut<T>(List<T> rows, int take, string list, Func<T, long> idOf)
    {
        if (rows.Count <= take) return null;
        rows.RemoveRange(take, rows.Count - take);
        return Encode(list, idOf(rows[^1]));
    }

    private static string Encode(string list, long id) =>
        Convert.ToBase64String(Encoding.ASCII.GetBytes(list + ":" + id.ToString(CultureInfo.InvariantCulture)));

    private static bool TryDecode(string list, string cursor, out long id)
    {
        id = 0;
        try
        {
            var text = Encoding.ASCII.GetString(Convert.FromBase64String(cursor));
            return text.Length > list.Length && text.StartsWith(list + ":", StringComparison.Ordinal)
                   && long.TryParse(text.AsSpan(list.Length + 1), NumberStyles.None, CultureInfo.InvariantCulture, out id) && id > 0;
        }
        catch (FormatException)
        {
            return false;
        }
    }
}
