using Dapper;
using Microsoft.AspNetCore.OpenApi;
using Microsoft.Extensions.Diagnostics.HealthChecks;
using Microsoft.OpenApi;

namespace LoyaltyApi.Infrastructure;

public sealed class DatabaseHealthCheck(Db db) : IHealthCheck
{
    private const string PingSql = "SELECT 1";

    public async Task<HealthCheckResult> CheckHealthAsync(HealthCheckContext context, CancellationToken cancellationToken = default)
    {
        try
        {
            await using var connection = await db.OpenAsync(cancellationToken);
            await connection.ExecuteScalarAsync<int>(new CommandDefinition(db.Sql(PingSql), cancellationToken: cancellationToken));
            return HealthCheckResult.Healthy($"{db.Provider} reachable");
        }
        catch (Exception e) when (e is System.Data.Common.DbException or InvalidOperationException or TimeoutException)
        {
            return HealthCheckResult.Unhealthy($"{db.Provider} unreachable");
        }
    }
}

/// <summary>Describes the two ways to call the API in the OpenAPI document.</summary>
public sealed class SecuritySchemesTransformer : IOpenApiDocumentTransformer
{
    public Task TransformAsync(OpenApiDocument document, OpenApiDocumentTransformerContext context, CancellationToken cancellationToken)
    {
        document.Info.Title = "LoyaltyApi";
        document.Info.Description = "Loyalty-program backend: members, cards, purchases with points earn/redeem/refund. " +
            "Staff and systems call with X-Api-Key (roles admin, pos, finance, analyst); members with a bearer JWT whose sub is their member id. " +
            "Errors are RFC 9457 problem+json with a stable `code` and the offending `field`.";
        document.Components ??= new OpenApiComponents();
        document.Components.SecuritySchemes ??= new Dictionary<string, IOpenApiSecurityScheme>();
        document.Components.SecuritySchemes["ApiKey"] = new OpenApiSecurityScheme
        {
            Type = SecuritySchemeType.ApiKey,
            In = ParameterLocation.Header,
            Name = ApiKeys.Header,
            Description = "API key issued by POST /v1/api-clients (or the bootstrap Auth:AdminApiKey).",
        };
        document.Components.SecuritySchemes["Bearer"] = new OpenApiSecurityScheme
        {
            Type = SecuritySchemeType.Http,
            Scheme = "bearer",
            BearerFormat = "JWT",
            Description = "Member token from the brand's identity provider; sub = member id.",
        };
        return Task.CompletedTask;
    }
}
