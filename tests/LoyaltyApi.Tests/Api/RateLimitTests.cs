using System.Net;
using System.Net.Http.Json;
using LoyaltyApi.Tests.Infrastructure;
using Xunit;

namespace LoyaltyApi.Tests.Api;

public sealed class LowRateLimitFixture : ApiFixture
{
    private readonly SqliteTestDatabase _database = new();
    public override ITestDatabase Database => _database;
    protected override int PermitsPerSecond => 20;
}

public sealed class LowRateLimitPostgresFixture(PostgresTestDatabase database) : ApiFixture
{
    public override ITestDatabase Database => database;
    protected override Task PrepareDatabaseAsync() => database.ResetAsync();
    protected override int PermitsPerSecond => 20;
}

public abstract class RateLimitTests(ApiFixture fx) : ApiTests(fx)
{
    [Fact]
    public async Task AKeyThatSendsTooFastGets429WithRetryAfterWhileOthersCarryOn()
    {
        // A bucket of 20 lets at most 40 through even if a refill falls inside the burst.
        var responses = await Task.WhenAll(Enumerable.Range(0, 100).Select(_ => Fx.BrandPos.GetAsync("/v1/program")));

        var limited = responses.Where(r => r.StatusCode == HttpStatusCode.TooManyRequests).ToList();
        Assert.InRange(limited.Count, 60, 100);
        Assert.All(responses, r => Assert.Contains(r.StatusCode, new[] { HttpStatusCode.OK, HttpStatusCode.TooManyRequests }));
        var problem = await AssertRateLimitedAsync(limited[0]);
        Assert.Equal(HttpStatusCode.OK, (await Fx.PartnerPos.GetAsync("/v1/program")).StatusCode);
        Assert.NotNull(problem.GetProperty("detail").GetString());
    }

    [Fact]
    public async Task PurchasesRefusedWith429WriteNothing()
    {
        var (member, card) = await Fx.EnrollAsync();
        await Task.Delay(1_100); // the enrolment's own requests refilled
        // How many get through depends on how fast the requests arrive (the bucket refills at 20/s): what
        // matters is that some are refused and that exactly the accepted ones were written.
        var receipts = Enumerable.Range(0, 100).Select(i => Fx.Unique("RL")).ToList();
        var responses = await Task.WhenAll(receipts.Select(r => Fx.BrandPos.PostAsJsonAsync("/v1/purchases", Fx.PurchaseBody(card, 5m, receipt: r))));

        var accepted = receipts.Where((_, i) => responses[i].StatusCode == HttpStatusCode.Created).ToList();
        var limited = receipts.Where((_, i) => responses[i].StatusCode == HttpStatusCode.TooManyRequests).ToList();
        Assert.Equal(100, accepted.Count + limited.Count);
        Assert.NotEmpty(accepted);
        Assert.NotEmpty(limited);
        foreach (var r in responses.Where(r => r.StatusCode == HttpStatusCode.TooManyRequests)) await AssertRateLimitedAsync(r);
        var stored = (await Fx.QueryAsync<string>("SELECT receipt_number FROM purchases WHERE member_id = @member", new { member })).Order().ToList();
        Assert.Equal(accepted.Order().ToList(), stored);
        Assert.Equal(accepted.Count * 5, await Fx.ScalarAsync<long>("SELECT COALESCE(SUM(points), 0) FROM ledger_entries WHERE member_id = @member", new { member }));
    }

    [Fact]
    public async Task AMemberTokenHasItsOwnBucket()
    {
        // The other tests in this class drain the POS key's bucket; a second lets it refill so that the
        // check below is about Alice's burst only.
        await Task.Delay(1_100);
        var (alice, _) = await Fx.EnrollAsync();
        var (bob, _) = await Fx.EnrollAsync();
        var responses = await Task.WhenAll(Enumerable.Range(0, 100).Select(_ => Fx.MemberClient(alice).GetAsync("/v1/me")));

        Assert.All(responses, r => Assert.Contains(r.StatusCode, new[] { HttpStatusCode.OK, HttpStatusCode.TooManyRequests }));
        await AssertRateLimitedAsync(responses.First(r => r.StatusCode == HttpStatusCode.TooManyRequests));
        Assert.Equal(HttpStatusCode.OK, (await Fx.MemberClient(bob).GetAsync("/v1/me")).StatusCode);
        Assert.Equal(HttpStatusCode.OK, (await Fx.BrandPos.GetAsync("/v1/program")).StatusCode);
    }

    /// <summary>A 429 problem with the code <c>rate_limited</c> and a <c>Retry-After</c> of at least a second.</summary>
    private static async Task<System.Text.Json.JsonElement> AssertRateLimitedAsync(HttpResponseMessage response)
    {
        var problem = await AssertProblemAsync(response, HttpStatusCode.TooManyRequests, "rate_limited");
        Assert.True(int.Parse(response.Headers.GetValues("Retry-After").Single()) >= 1);
        return problem;
    }
}

public sealed class SqliteRateLimitTests(LowRateLimitFixture fx) : RateLimitTests(fx), IClassFixture<LowRateLimitFixture>;

[Collection(PostgresCollection.Name), Trait("Database", "Postgres")]
public sealed class PostgresRateLimitTests(LowRateLimitPostgresFixture fx) : RateLimitTests(fx), IClassFixture<LowRateLimitPostgresFixture>;
