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
}
