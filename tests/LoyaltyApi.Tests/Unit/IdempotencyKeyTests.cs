using System.Security.Cryptography;
using System.Text;
using System.Text.Json;
using LoyaltyApi.Features.Purchases;
using LoyaltyApi.Infrastructure;
using Microsoft.AspNetCore.Http;
using Xunit;

namespace LoyaltyApi.Tests.Unit;

/// <summary>
/// The header check on its own. The HTTP suites cover every malformed key the test client can send;
/// an empty header value is dropped by HttpClient before it leaves, so it is checked here.
/// </summary>
public sealed class IdempotencyKeyTests
{
    private static string? KeyOf(string? header)
    {
        var http = new DefaultHttpContext();
        if (header is not null) http.Request.Headers[Idempotency.Header] = header;
        return Idempotency.KeyFrom(http);
    }

    [Fact]
    public void NoHeaderMeansNoKey() => Assert.Null(KeyOf(null));

    [Fact]
    public void AVisibleAsciiKeyUpToTheLimitIsTaken() =>
        Assert.Equal(new string('k', Idempotency.MaxKeyLength), KeyOf(new string('k', Idempotency.MaxKeyLength)));

    [Theory]
    [InlineData("")]
    [InlineData("retry 1")]
    [InlineData("retry\u00011")]
    [InlineData("ключ")]
    public void AMalformedKeyIsA400NamingTheHeader(string header)
    {
        var rejection = Assert.Throws<DomainRejection>(() => KeyOf(header));
        Assert.Equal((400, "invalid_idempotency_key", Idempotency.Header), (rejection.Status, rejection.Code, rejection.Field));
    }

    [Fact]
    public void AKeyOverTheLimitIsA400() =>
        Assert.Equal(400, Assert.Throws<DomainRejection>(() => KeyOf(new string('k', Idempotency.MaxKeyLength + 1))).Status);

    /// <summary>How request hashes were first computed. Stored records hold such hashes: any other way of computing them must agree.</summary>
    private static string ReferenceHash<T>(string operation, T request)
    {
        using var sha = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
        sha.AppendData(Encoding.UTF8.GetBytes(operation + "\n"));
        sha.AppendData(JsonSerializer.SerializeToUtf8Bytes(request));
        return Convert.ToHexStringLower(sha.GetHashAndReset());
    }

    private static PurchaseRequest Basket(int lines, string sku) => new(3, "R-1", new DateTimeOffset(2026, 11, 25, 10, 0, 0, TimeSpan.FromHours(2)), "USD",
        lines * 1.25m, Enumerable.Range(1, lines).Select(i => new PurchaseLineRequest($"{sku}-{i}", i, 1.25m, i % 2 == 0 ? null : "café")).ToArray(),
        CardNumber: "9000000000123");

    [Fact]
    public void RequestHashesAreTheOnesStoredRecordsHold()
    {
        // Small and large bodies in turn, on one thread, so the reused buffers are exercised both ways.
        foreach (var (operation, request) in new[]
                 {
                     ("purchase", Basket(3, "SKU")), ("refund:42", Basket(1, "ключ \"😀\"")), ("purchase", Basket(500, new string('x', 64))),
                     ("purchase", Basket(2, "SKU")),
                 })
        {
            Assert.Equal(ReferenceHash(operation, request), Idempotency.HashOf(operation, request));
        }
        Assert.NotEqual(Idempotency.HashOf("purchase", Basket(3, "SKU")), Idempotency.HashOf("quote", Basket(3, "SKU")));
    }
}
