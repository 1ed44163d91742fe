using System.Globalization;
using DbUp;
using DbUp.Builder;
using DbUp.Engine;

namespace LoyaltyApi.Infrastructure;

/// <summary>Applies the numbered scripts under /db/&lt;provider&gt; (embedded in the assembly) with DbUp.</summary>
public static partial class Migrations
{
    /// <param name="throughScript">Apply the scripts numbered up to this one only (tests of a script's data conversion); null applies all.</param>
    public static DatabaseUpgradeResult Apply(Db db, bool verbose, int? throughScript = null)
    {
        var folder = db.Provider switch
        {
            DatabaseProvider.Sqlite => "sqlite",
            DatabaseProvider.Postgres => "postgres",
            DatabaseProvider.SqlServer => "sqlserver",
            _ => throw new ArgumentOutOfRangeException(nameof(db)),
        };
        var prefix = $"Migrations.{folder}.";
        UpgradeEngineBuilder builder = db.Provider switch
        {
            DatabaseProvider.Sqlite => DeployChanges.To.SqliteDatabase(db.ConnectionString),
            DatabaseProvider.Postgres => DeployChanges.To.PostgresqlDatabase(db.ConnectionString),
            _ => DeployChanges.To.SqlDatabase(db.ConnectionString),
        };
        builder = builder
            .WithScriptsEmbeddedInAssembly(typeof(Migrations).Assembly, name => name.StartsWith(prefix, StringComparison.Ordinal)
                && (throughScript is null || int.Parse(name.AsSpan(prefix.Length, 4), CultureInfo.InvariantCulture) <= throughScript))
            .WithTransactionPerScript();
        builder = verbose ? builder.LogToConsole() : builder.LogToNowhere();
        var result = builder.Build().PerformUpgrade();
        if (!result.Successful)
        {
            throw new InvalidOperationException($"Migration {result.ErrorScript?.Name} failed.", result.Error);
        }
        return result;
    }

    public static void ApplyOnStartup(WebApplication app)
    {
        var db = app.Services.GetRequiredService<Db>();
        var result = Apply(db, verbose: false);
        LogApplied(app.Logger, result.Scripts.Count(), db.Provider);
    }

    [LoggerMessage(Level = LogLevel.Information, Message = "Applied {Count} migration script(s) on {Provider}")]
    private static partial void LogApplied(ILogger logger, int count, DatabaseProvider provider);
}
