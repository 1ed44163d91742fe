using System.Net;
using LoyaltyApi.Tests.Infrastructure;
using Xunit;

namespace LoyaltyApi.Tests.Api;

public sealed class LowRateLimitFixture : ApiFixture
{
    private readonly SqliteTestDatabase _database = new();
    public override ITestDatabase Database => _database;
    protected override int PermitsPerSecond => 20;
}

public sealed class RateLimitTests(LowRateLimitFixture fx) : ApiTests(fx), IClassFixture<LowRateLimitFixture>
{
    [Fact]
    public async Task AKeyThatSendsTooFastGets429WithRetryAfterWhileOthersCarryOn()
    {
        var responses = await Task.WhenAll(Enumerable.Range(0, 60).Select(_ => Fx.BrandPos.GetAsync("/v1/program")));

        var limited = responses.Where(r => r.StatusCode == HttpStatusCode.TooManyRequests).ToList();
        Assert.InRange(limited.Count, 30, 60);
        Assert.All(responses, r => Assert.Contains(r.StatusCode, new[] { HttpStatusCode.OK, HttpStatusCode.TooManyRequests }));
        var problem = await AssertProblemAsync(limited[0], HttpStatusCode.TooManyRequests, "rate_limited");
        Assert.True(int.Parse(limited[0].Headers.GetValues("Retry-After").Single()) >= 1);
        Assert.Equal(HttpStatusCode.OK, (await Fx.PartnerPos.GetAsync("/v1/program")).StatusCode);
        Assert.NotNull(problem.GetProperty("detail").GetString());
    }
}
