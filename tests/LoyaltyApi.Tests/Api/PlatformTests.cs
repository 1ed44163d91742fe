using System.Net;
using System.Text.Json;
using LoyaltyApi.Tests.Infrastructure;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.Configuration.Json;
using Microsoft.Extensions.DependencyInjection;
using Xunit;

namespace LoyaltyApi.Tests.Api;

public abstract class PlatformTests(ApiFixture fx) : ApiTests(fx)
{
    [Fact]
    public async Task HealthAnswersWithoutCredentials()
    {
        var r = await Fx.Anonymous.GetAsync("/health");

        Assert.Equal(HttpStatusCode.OK, r.StatusCode);
        Assert.Equal("Healthy", await r.Content.ReadAsStringAsync());
    }

    [Fact]
    public async Task TheOpenApiDocumentDescribesEveryEndpointWithItsErrors()
    {
        var doc = JsonDocument.Parse(await Fx.Anonymous.GetStringAsync("/openapi/v1.json")).RootElement;
        var operations = 0;

        foreach (var path in doc.GetProperty("paths").EnumerateObject())
        {
            foreach (var op in path.Value.EnumerateObject())
            {
                operations++;
                var where = $"{op.Name.ToUpperInvariant()} {path.Name}";
                Assert.True(op.Value.TryGetProperty("operationId", out _), $"{where} has no operationId");
                Assert.True(op.Value.TryGetProperty("summary", out _), $"{where} has no summary");
                var codes = op.Value.GetProperty("responses").EnumerateObject().Select(r => r.Name).ToList();
                Assert.Contains(codes, c => c.StartsWith('2'));
                Assert.True(codes.Any(c => c.StartsWith('4')), $"{where} documents no 4xx response");
            }
        }
        Assert.True(operations >= 20, $"only {operations} operations documented");
        Assert.True(doc.GetProperty("components").GetProperty("securitySchemes").TryGetProperty("ApiKey", out _));
    }

    [Fact]
    public async Task SwaggerUiIsServed()
    {
        var r = await Fx.Anonymous.GetAsync("/swagger/index.html");

        Assert.Equal(HttpStatusCode.OK, r.StatusCode);
    }

    [Fact]
    public void SettingsFilesAreReadOnceAndNotWatched()
    {
        // A watcher over the content root would wake on every write to SQLite's default App_Data.
        var root = (IConfigurationRoot)Fx.Factory.Services.GetRequiredService<IConfiguration>();
        var files = root.Providers.OfType<JsonConfigurationProvider>().ToList();

        Assert.Contains(files, f => f.Source.Path == "appsettings.json");
        Assert.All(files, f => Assert.False(f.Source.ReloadOnChange, $"{f.Source.Path} is watched for changes"));
    }

    [Fact]
    public async Task RuntimeCountersGrowWithTheWorkDoneBetweenTwoReads()
    {
        var before = JsonDocument.Parse(await Fx.Admin.GetStringAsync("/v1/runtime")).RootElement;
        for (var i = 0; i < 20; i++) (await Fx.Admin.GetAsync("/v1/program")).EnsureSuccessStatusCode();
        var after = JsonDocument.Parse(await Fx.Admin.GetStringAsync("/v1/runtime")).RootElement;

        Assert.True(after.GetProperty("allocatedBytes").GetInt64() > before.GetProperty("allocatedBytes").GetInt64());
        Assert.True(after.GetProperty("uptimeSeconds").GetDouble() > before.GetProperty("uptimeSeconds").GetDouble());
        foreach (var counter in new[] { "cpuUserMs", "cpuKernelMs", "gcPauseMs" })
        {
            Assert.True(after.GetProperty(counter).GetDouble() >= before.GetProperty(counter).GetDouble(), $"{counter} went back");
        }
        foreach (var counter in new[] { "gen0Collections", "gen1Collections", "gen2Collections", "threadPoolWorkItems", "lockContentions" })
        {
            Assert.True(after.GetProperty(counter).GetInt64() >= before.GetProperty(counter).GetInt64(), $"{counter} went back");
        }
        Assert.True(after.GetProperty("workingSetBytes").GetInt64() > 0);
        Assert.True(after.GetProperty("heapBytes").GetInt64() > 0);
        Assert.True(after.GetProperty("threadPoolThreads").GetInt32() > 0);
    }

    [Fact]
    public async Task RuntimeCountersAreForAdminsOnly()
    {
        var r = await Fx.BrandPos.GetAsync("/v1/runtime");

        Assert.Equal(HttpStatusCode.Forbidden, r.StatusCode);
        Assert.Equal("application/problem+json", r.Content.Headers.ContentType?.MediaType);
    }
}
