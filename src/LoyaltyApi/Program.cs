using System.Text.Json.Serialization;
using FluentValidation;
using LoyaltyApi.Features.ApiClients;
using LoyaltyApi.Features.Cards;
using LoyaltyApi.Features.Members;
using LoyaltyApi.Features.Merchants;
using LoyaltyApi.Features.Operations;
using LoyaltyApi.Features.Points;
using LoyaltyApi.Features.ProgramSettings;
using LoyaltyApi.Features.Purchases;
using LoyaltyApi.Infrastructure;

// appsettings*.json are read once, at start. Reloading them on change takes a watcher over the whole
// content root, which holds SQLite's default App_Data: it woke on every write (measured with a SQLite
// checkout: 36-40 -> 13-14 context switches in the service per purchase without it). An operator who
// wants reloads says so in the environment or on the command line, which comes later and wins.
var builder = WebApplication.CreateBuilder(
    Environment.GetEnvironmentVariable("DOTNET_hostBuilder__reloadConfigOnChange") is null
    && Environment.GetEnvironmentVariable("ASPNETCORE_hostBuilder__reloadConfigOnChange") is null
        ? ["--hostBuilder:reloadConfigOnChange=false", .. args]
        : args);

// A rule stops at its first failure, so later checks never see a null the first one rejected.
ValidatorOptions.Global.DefaultRuleLevelCascadeMode = CascadeMode.Stop;

builder.Services.AddOptions<DatabaseOptions>().BindConfiguration(DatabaseOptions.Section);
builder.Services.AddOptions<PointsLifecycleOptions>().BindConfiguration(PointsLifecycleOptions.Section);
builder.Services.AddOptions<IdempotencyOptions>().BindConfiguration(IdempotencyOptions.Section);
builder.Services.AddSingleton<Db>();
builder.Services.AddSingleton(TimeProvider.System);
builder.Services.AddSingleton<PointsLifecycle>();
builder.Services.AddSingleton<ProgramCache>();
builder.Services.AddSingleton<StoreDirectory>();
builder.Services.AddHostedService<PointsLifecycleService>();
builder.Services.AddSingleton<IdempotencyRetention>();
builder.Services.AddHostedService<IdempotencyRetentionService>();
builder.Services.AddValidatorsFromAssemblyContaining<Program>(ServiceLifetime.Singleton);
builder.Services.AddLoyaltyAuth();
builder.Services.AddProblemDetails(o => o.CustomizeProblemDetails = ctx =>
{
    ctx.ProblemDetails.Extensions.TryAdd("traceId", ctx.HttpContext.TraceIdentifier);
    // Problems written by the framework (no route, no credentials, wrong method) get a code too.
    ctx.ProblemDetails.Extensions.TryAdd("code", Problems.CodeForStatus(ctx.ProblemDetails.Status ?? ctx.HttpContext.Response.StatusCode));
});
builder.Services.AddExceptionHandler<GlobalExceptionHandler>();
builder.Services.Configure<RouteHandlerOptions>(o => o.ThrowOnBadRequest = true);
builder.Services.ConfigureHttpJsonOptions(o =>
{
    o.SerializerOptions.Converters.Add(new JsonStringEnumConverter(allowIntegerValues: false));
    // A required field left out, or a null where none is allowed, is an error rather than a silent 0 or null.
    o.SerializerOptions.RespectRequiredConstructorParameters = true;
    o.SerializerOptions.RespectNullableAnnotations = true;
    // A misspelt field ("pointsToRedem") is an error, not silently ignored.
    o.SerializerOptions.UnmappedMemberHandling = JsonUnmappedMemberHandling.Disallow;
});
builder.Services.AddLoyaltyLimits();
builder.Services.AddOpenApi(o => o.AddDocumentTransformer<SecuritySchemesTransformer>());
builder.Services.AddHealthChecks().AddCheck<DatabaseHealthCheck>("database");

var app = builder.Build();

if (args.Contains("migrate"))
{
    // Production path: `dotnet LoyaltyApi.dll migrate` applies pending scripts and exits.
    var result = Migrations.Apply(app.Services.GetRequiredService<Db>(), verbose: true);
    Console.WriteLine($"Applied {result.Scripts.Count()} script(s).");
    return;
}

if (app.Configuration.GetValue<bool>("Database:MigrateOnStartup"))
{
    Migrations.ApplyOnStartup(app);
}

app.UseExceptionHandler();
app.UseStatusCodePages();
app.UseRequestSizeLimit();
app.UseAuthentication();
app.UseRateLimiter();
app.UseAuthorization();

app.MapOpenApi();
app.UseSwaggerUI(o => o.SwaggerEndpoint("/openapi/v1.json", "LoyaltyApi v1"));
app.MapHealthChecks("/health").AllowAnonymous();

app.MapProgram().WithAuthProblems();
app.MapMerchants().WithAuthProblems();
app.MapApiClients().WithAuthProblems();
app.MapMembers().WithAuthProblems();
app.MapCards().WithAuthProblems();
app.MapPurchases().WithAuthProblems();
app.MapBalances().WithAuthProblems();
PointsLifecycle.MapPointsLifecycle(app).WithAuthProblems();
IdempotencyRetention.MapIdempotencyRetention(app).WithAuthProblems();
app.MapRuntime().WithAuthProblems();

app.Run();

public partial class Program;
