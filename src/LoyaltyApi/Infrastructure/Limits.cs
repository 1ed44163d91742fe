using System.Globalization;
using System.Security.Claims;
using System.Threading.RateLimiting;
using Microsoft.AspNetCore.Http.Features;
using Microsoft.AspNetCore.RateLimiting;

namespace LoyaltyApi.Infrastructure;

public sealed class LimitsOptions
{
    public const string Section = "Limits";
    /// <summary>Largest request body accepted; a 500-line receipt is about 60 KB.</summary>
    public long MaxRequestBodyBytes { get; set; } = 256 * 1024;
    /// <summary>Sustained requests per second per API key or member (0 turns rate limiting off).</summary>
    public int PermitsPerSecond { get; set; } = 50;
    /// <summary>Short bursts above the sustained rate, e.g. a till replaying after being offline.</summary>
    public int Burst { get; set; } = 200;
}

public static class LimitsSetup
{
    public static IServiceCollection AddLoyaltyLimits(this IServiceCollection services)
    {
        services.AddOptions<LimitsOptions>().BindConfiguration(LimitsOptions.Section);
        services.AddRateLimiter(o =>
        {
            o.RejectionStatusCode = StatusCodes.Status429TooManyRequests;
            o.GlobalLimiter = PartitionedRateLimiter.Create<HttpContext, string>(ctx =>
            {
                var options = ctx.RequestServices.GetRequiredService<Microsoft.Extensions.Options.IOptions<LimitsOptions>>().Value;
                if (options.PermitsPerSecond <= 0) return RateLimitPartition.GetNoLimiter("off");
                return RateLimitPartition.GetTokenBucketLimiter(PartitionOf(ctx), _ => new TokenBucketRateLimiterOptions
                {
                    TokenLimit = Math.Max(options.Burst, options.PermitsPerSecond),
                    TokensPerPeriod = options.PermitsPerSecond,
                    ReplenishmentPeriod = TimeSpan.FromSeconds(1),
                    QueueLimit = 0,
                    AutoReplenishment = true,
                });
            });
            o.OnRejected = async (context, ct) =>
            {
                var retryAfter = context.Lease.TryGetMetadata(MetadataName.RetryAfter, out var wait) ? Math.Max(1, (int)Math.Ceiling(wait.TotalSeconds)) : 1;
                context.HttpContext.Response.Headers.RetryAfter = retryAfter.ToString(CultureInfo.InvariantCulture);
                var permits = context.HttpContext.RequestServices.GetRequiredService<Microsoft.Extensions.Options.IOptions<LimitsOptions>>().Value.PermitsPerSecond;
                await Problems.Make(429, "Too many requests", "rate_limited",
                    $"This client sends more than {permits} requests per second; retry after {retryAfter} s.", null)
                    .ExecuteAsync(context.HttpContext);
            };
        });
        return services;
    }

    /// <summary>One bucket per API client or member; anonymous callers share one per address.</summary>
    private static string PartitionOf(HttpContext ctx) =>
        ctx.User.FindFirstValue(ApiKeyClaims.ClientKey)
        ?? (ctx.User.FindFirstValue("sub") is { } sub ? "member:" + sub : "ip:" + ctx.Connection.RemoteIpAddress);

    /// <summary>Refuses oversized bodies up front (Kestrel enforces the same limit on chunked bodies).</summary>
    public static IApplicationBuilder UseRequestSizeLimit(this IApplicationBuilder app) => app.Use(async (ctx, next) =>
    {
        var max = ctx.RequestServices.GetRequiredService<Microsoft.Extensions.Options.IOptions<LimitsOptions>>().Value.MaxRequestBodyBytes;
        if (ctx.Features.Get<IHttpMaxRequestBodySizeFeature>() is { IsReadOnly: false } feature) feature.MaxRequestBodySize = max;
        if (ctx.Request.ContentLength > max)
        {
            await Problems.Make(413, "Payload too large", "too_large", $"Request bodies are limited to {max} bytes.", "body").ExecuteAsync(ctx);
            return;
        }
        await next(ctx);
    });
}
