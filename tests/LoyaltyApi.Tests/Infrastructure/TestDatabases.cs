using System.Data.Common;
using Dapper;
using LoyaltyApi.Infrastructure;
using Microsoft.Data.Sqlite;
using Npgsql;
using Respawn;
using Xunit;

namespace LoyaltyApi.Tests.Infrastructure;

/// <summary>A database a test class runs against.</summary>
public interface ITestDatabase
{
    DatabaseProvider Provider { get; }
    string ConnectionString { get; }
    DbConnection Open();
}

/// <summary>SQLite: a fresh file per test class (Respawn has no SQLite adapter).</summary>
public sealed class SqliteTestDatabase : ITestDatabase, IDisposable
{
    private readonly string _path = Path.Combine(Path.GetTempPath(), $"loyalty-test-{Guid.NewGuid():N}.db");

    public DatabaseProvider Provider => DatabaseProvider.Sqlite;
    public string ConnectionString => $"Data Source={_path};Foreign Keys=True;Default Timeout=60";

    public DbConnection Open()
    {
        var c = new SqliteConnection(ConnectionString);
        c.Open();
        return c;
    }

    public void Dispose()
    {
        SqliteConnection.ClearAllPools();
        foreach (var suffix in new[] { "", "-wal", "-shm" })
        {
            try { File.Delete(_path + suffix); } catch (IOException) { }
        }
    }
}

/// <summary>
/// PostgreSQL: one migrated database for the whole run, shared by the PostgreSQL test classes
/// (which run one after another in one collection) and reset with Respawn before each class.
/// The server comes from LOYALTY_TEST_POSTGRES; without it the suite fails loudly rather than skip.
/// </summary>
public sealed class PostgresTestDatabase : ITestDatabase, IAsyncLifetime
{
    public const string EnvironmentVariable = "LOYALTY_TEST_POSTGRES";
    private Respawner? _respawner;

    public DatabaseProvider Provider => DatabaseProvider.Postgres;
    public string ConnectionString { get; private set; } = "";

    public DbConnection Open()
    {
        var c = new NpgsqlConnection(ConnectionString);
        c.Open();
        return c;
    }

    public async Task InitializeAsync()
    {
        var server = Environment.GetEnvironmentVariable(EnvironmentVariable);
        if (string.IsNullOrWhiteSpace(server))
        {
            throw new InvalidOperationException(
                $"{EnvironmentVariable} is not set: the PostgreSQL suite cannot run. Use ./test.sh, which starts a private PostgreSQL.");
        }
        var name = $"loyalty_test_{Environment.ProcessId}_{DateTime.UtcNow:HHmmss}";
        await using (var admin = new NpgsqlConnection(server))
        {
            await admin.OpenAsync();
            await admin.ExecuteAsync($"DROP DATABASE IF EXISTS {name}");
            await admin.ExecuteAsync($"CREATE DATABASE {name}");
        }
        ConnectionString = new NpgsqlConnectionStringBuilder(server) { Database = name, MaxPoolSize = 200 }.ToString();
        var options = Microsoft.Extensions.Options.Options.Create(new DatabaseOptions { Provider = DatabaseProvider.Postgres, ConnectionString = ConnectionString });
        Migrations.Apply(new Db(options, new Microsoft.Extensions.Hosting.Internal.HostingEnvironment { ContentRootPath = Path.GetTempPath() }), verbose: false);
    }

    public async Task ResetAsync()
    {
        await using var connection = new NpgsqlConnection(ConnectionString);
        await connection.OpenAsync();
        _respawner ??= await Respawner.CreateAsync(connection, new RespawnerOptions
        {
            DbAdapter = DbAdapter.Postgres,
            SchemasToInclude = ["public"],
            TablesToIgnore = ["schemaversions"],
        });
        await _respawner.ResetAsync(connection);
    }

    public async Task DisposeAsync()
    {
        if (ConnectionString.Length == 0) return;
        NpgsqlConnection.ClearAllPools();
        var server = Environment.GetEnvironmentVariable(EnvironmentVariable)!;
        var name = new NpgsqlConnectionStringBuilder(ConnectionString).Database;
        await using var admin = new NpgsqlConnection(server);
        await admin.OpenAsync();
        await admin.ExecuteAsync($"DROP DATABASE IF EXISTS {name} WITH (FORCE)");
    }
}

[CollectionDefinition(Name)]
public sealed class PostgresCollection : ICollectionFixture<PostgresTestDatabase>
{
    public const string Name = "PostgreSQL";
}
