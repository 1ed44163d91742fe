using System.Collections.Concurrent;
using System.Data;
using System.Data.Common;
using System.Text.RegularExpressions;
using Dapper;
using Microsoft.Data.SqlClient;
using Microsoft.Data.Sqlite;
using Microsoft.Extensions.Options;
using Npgsql;

namespace LoyaltyApi.Infrastructure;

public enum DatabaseProvider { Sqlite, Postgres, SqlServer }

public sealed class DatabaseOptions
{
    public const string Section = "Database";
    public DatabaseProvider Provider { get; set; } = DatabaseProvider.Sqlite;
    /// <summary>Empty means a SQLite file under the app's data folder.</summary>
    public string? ConnectionString { get; set; }
    public bool MigrateOnStartup { get; set; }
    /// <summary>
    /// PostgreSQL: connections of their own for statements outside a transaction (quotes, balance
    /// look-ups), pipelined (Npgsql multiplexing), so they never wait behind transactions holding every
    /// connection of the connection string's pool. 0 runs everything on that one pool.
    /// </summary>
    public int MultiplexedConnections { get; set; } = 2;
}

/// <summary>
/// Everything that differs between SQLite, PostgreSQL and SQL Server lives here. SQL in the
/// features is written once in the portable PostgreSQL form; the SQL Server dialect rewrites the
/// three constructs that differ (<c>RETURNING col</c>, <c>LIMIT @n</c> and a closing <c>FOR UPDATE</c>
/// or <c>FOR UPDATE OF table</c> line, which SQLite drops because its write transactions hold the only
/// writer lock). A statement may also say <c>{next table}</c> for the id the table's next row will
/// take: a purchase takes its ids up front, so one round trip writes a row and everything that points at it.
/// </summary>
public abstract partial class SqlDialect
{
    private readonly ConcurrentDictionary<string, string> _withIds = new(StringComparer.Ordinal);

    public abstract DatabaseProvider Provider { get; }
    public abstract DbConnection CreateConnection(string connectionString);
    public abstract bool IsUniqueViolation(DbException exception);

    /// <summary>Parameters one command may carry; a longer <see cref="SqlBatch"/> is cut between statements.</summary>
    public virtual int MaxParametersPerCommand => int.MaxValue;

    /// <summary>An expression for a fresh id of <paramref name="table"/>; never handed out twice.</summary>
    protected abstract string NextId(string table);

    /// <summary>
    /// The statement that ends a write batch and commits the transaction in the same round trip, or
    /// null where the transaction object must commit (see <see cref="SqlBatch.ExecuteAndCommitAsync"/>).
    /// Only with <see cref="SendsStatementsSeparately"/>.
    /// </summary>
    public virtual string? CommitInBatch => null;

    /// <summary>
    /// Whether a <see cref="SqlBatch"/> goes as a <see cref="DbBatch"/> of one command per statement with
    /// <c>$n</c> placeholders (PostgreSQL) rather than one command of ';'-separated statements with named
    /// parameters. Npgsql then sends each statement as it is: no parsing and rewriting of the text per call.
    /// </summary>
    public virtual bool SendsStatementsSeparately => false;

    public virtual string Render(string sql) =>
        sql.Contains("{next ", StringComparison.Ordinal) ? _withIds.GetOrAdd(sql, ExpandNextIds) : sql;

    /// <summary>
    /// The last line of a statement that locks the rows it reads until the transaction ends: <c>FOR UPDATE</c>,
    /// or <c>FOR UPDATE OF table</c> when it joins tables whose rows it only reads.
    /// </summary>
    [GeneratedRegex(@"\nFOR UPDATE(?: OF (?<table>\w+))?$")]
    private static partial Regex ForUpdateLine();

    protected static bool EndsWithForUpdate(string sql) => ForUpdateLine().IsMatch(sql.TrimEnd().TrimEnd(';'));

    /// <summary>The statement without its closing FOR UPDATE line, and the table it names after OF (null without OF).</summary>
    protected static (string Sql, string? Table) WithoutForUpdate(string sql)
    {
        var text = sql.TrimEnd().TrimEnd(';');
        var line = ForUpdateLine().Match(text);
        return (text[..line.Index].TrimEnd(), line.Groups["table"].Success ? line.Groups["table"].Value : null);
    }

    protected string ExpandNextIds(string sql) => NextIdPlaceholder().Replace(sql, m => NextId(m.Groups[1].Value));

    [GeneratedRegex(@"\{next (\w+)\}")]
    private static partial Regex NextIdPlaceholder();

    public static SqlDialect For(DatabaseProvider provider) => provider switch
    {
        DatabaseProvider.Sqlite => new SqliteDialect(),
        DatabaseProvider.Postgres => new PostgresDialect(),
        DatabaseProvider.SqlServer => new SqlServerDialect(),
        _ => throw new ArgumentOutOfRangeException(nameof(provider)),
    };
}

public sealed class SqliteDialect : SqlDialect
{
    public override DatabaseProvider Provider => DatabaseProvider.Sqlite;
    public override DbConnection CreateConnection(string connectionString) => new SqliteConnection(connectionString);
    // 19 = SQLITE_CONSTRAINT; 2067/1555 are its UNIQUE and PRIMARY KEY extended codes.
    public override bool IsUniqueViolation(DbException exception) =>
        exception is SqliteException { SqliteErrorCode: 19, SqliteExtendedErrorCode: 2067 or 1555 };
    // Every write transaction holds the database's write lock from BEGIN IMMEDIATE, so the next
    // rowid cannot be taken by anyone else before this transaction inserts it.
    protected override string NextId(string table) => $"(SELECT COALESCE(MAX(id), 0) + 1 FROM {table})";

    private readonly ConcurrentDictionary<string, string> _unlocked = new(StringComparer.Ordinal);

    // SQLite has no row locks: BEGIN IMMEDIATE already gave this transaction the only write lock.
    public override string Render(string sql) =>
        base.Render(EndsWithForUpdate(sql) ? _unlocked.GetOrAdd(sql, static s => WithoutForUpdate(s).Sql) : sql);
}

public sealed class PostgresDialect : SqlDialect
{
    public override DatabaseProvider Provider => DatabaseProvider.Postgres;
    public override DbConnection CreateConnection(string connectionString) => new NpgsqlConnection(connectionString);
    public override bool IsUniqueViolation(DbException exception) =>
        exception is PostgresException { SqlState: PostgresErrorCodes.UniqueViolation };
    // The identity column's own sequence: rows inserted without an id draw from it too.
    protected override string NextId(string table) => $"nextval('{table}_id_seq')";
    // Npgsql reads the transaction's end from the server's ReadyForQuery status, so a COMMIT at the
    // end of the write batch leaves the NpgsqlTransaction completed: one round trip fewer per checkout.
    // Not on SQL Server: without SET XACT_ABORT ON it runs the rest of a batch after a failed statement,
    // so a trailing COMMIT could commit half the writes. SQLite has no round trip to save.
    public override string? CommitInBatch => "COMMIT";
    public override bool SendsStatementsSeparately => true;
}

public sealed partial class SqlServerDialect : SqlDialect
{
    // The locked table is named on a line of its own ("FROM point_accounts"); anything else (an alias,
    // a schema, a join) fails loudly here, and so in the test that renders every statement.
    [GeneratedRegex(@"^FROM \w+$", RegexOptions.Multiline)]
    private static partial Regex FromLine();

    private static readonly SqlServerDialect Instance = new();
    private readonly ConcurrentDictionary<string, string> _rendered = new(StringComparer.Ordinal);

    public override DatabaseProvider Provider => DatabaseProvider.SqlServer;
    public override DbConnection CreateConnection(string connectionString) => new SqlConnection(connectionString);
    public override bool IsUniqueViolation(DbException exception) =>
        exception is SqlException { Number: 2601 or 2627 };

    public override string Render(string sql) => _rendered.GetOrAdd(sql, Translate);

    // SQL Server's limit is 2 100 per request; keep a margin.
    public override int MaxParametersPerCommand => 2000;

    // Sequences created by migration 0003; the columns default to them.
    protected override string NextId(string table) => $"NEXT VALUE FOR dbo.{table}_id_seq";

    /// <summary>Turns the portable form into T-SQL. Public so tests can parse every statement.</summary>
    public static string Translate(string sql)
    {
        var text = Instance.ExpandNextIds(sql).TrimEnd().TrimEnd(';');
        const string returning = "RETURNING ";
        var at = text.LastIndexOf(returning, StringComparison.Ordinal);
        if (at >= 0 && text.IndexOf('\n', at) < 0)
        {
            var columns = text[(at + returning.Length)..].Trim();
            text = text[..at].TrimEnd();
            var output = "OUTPUT " + string.Join(", ", columns.Split(',').Select(c => "INSERTED." + c.Trim()));
            var values = text.IndexOf("\nVALUES", StringComparison.Ordinal);
            if (values >= 0)
            {
                text = text[..values] + "\n" + output + text[values..];
            }
            else
            {
                // UPDATE ... SET ... WHERE ...: OUTPUT goes before WHERE.
                var where = text.LastIndexOf("\nWHERE", StringComparison.Ordinal);
                if (where < 0) throw new InvalidOperationException("Cannot place OUTPUT in: " + sql);
                text = text[..where] + "\n" + output + text[where..];
            }
        }
        if (EndsWithForUpdate(text))
        {
            // T-SQL locks with a table hint: an update lock, held to the end of the transaction, on the
            // FROM line's table only (the one FOR UPDATE OF names, when it names one).
            (text, var locked) = WithoutForUpdate(text);
            var from = FromLine().Match(text);
            if (!from.Success || (locked is not null && from.Value != "FROM " + locked))
            {
                throw new InvalidOperationException("Cannot place the lock hint in: " + sql);
            }
            text = text.Insert(from.Index + from.Length, " WITH (UPDLOCK, ROWLOCK)");
        }
        const string limit = "LIMIT ";
        var lim = text.LastIndexOf(limit, StringComparison.Ordinal);
        if (lim >= 0 && text.IndexOf('\n', lim) < 0)
        {
            var count = text[(lim + limit.Length)..].Trim();
            text = text[..lim].TrimEnd() + $"\nOFFSET 0 ROWS FETCH NEXT {count} ROWS ONLY";
        }
        return text + ";";
    }
}

/// <summary>The one entry point features use to reach the database.</summary>
public sealed class Db
{
    private readonly string _connectionString;
    // Where transactions run; the same as _connectionString unless PostgreSQL gives them a pool of their own.
    private readonly string _transactionConnectionString;

    public Db(IOptions<DatabaseOptions> options, IHostEnvironment environment)
    {
        var o = options.Value;
        Dialect = SqlDialect.For(o.Provider);
        _connectionString = ResolveConnectionString(o, environment.ContentRootPath);
        _transactionConnectionString = _connectionString;
        if (o.Provider == DatabaseProvider.Postgres)
        {
            (_connectionString, _transactionConnectionString) = SplitPostgresPools(_connectionString, o.MultiplexedConnections);
        }
        DapperSetup.Configure();
    }

    // SQLite takes one writer at a time; queueing writers here (fairly, without blocking threads)
    // beats letting them collide on SQLITE_BUSY and retry.
    private readonly SemaphoreSlim _sqliteWriter = new(1, 1);

    /// <summary>Held for the length of a write transaction on SQLite; a no-op on server databases.</summary>
    public async ValueTask<IAsyncDisposable?> EnterWriterAsync(CancellationToken ct)
    {
        if (Provider != DatabaseProvider.Sqlite) return null;
        await _sqliteWriter.WaitAsync(ct);
        return new Release(_sqliteWriter);
    }

    private sealed class Release(SemaphoreSlim semaphore) : IAsyncDisposable
    {
        public ValueTask DisposeAsync()
        {
            semaphore.Release();
            return ValueTask.CompletedTask;
        }
    }

    public SqlDialect Dialect { get; }
    public DatabaseProvider Provider => Dialect.Provider;
    /// <summary>For tools that run their own transactions (migrations): the transaction pool's connection string.</summary>
    public string ConnectionString => _transactionConnectionString;

    public string Sql(string portableSql) => Dialect.Render(portableSql);

    private int _sqliteWal;

    /// <summary>A connection for statements outside a transaction; on PostgreSQL, from the multiplexed pool.</summary>
    public Task<DbConnection> OpenAsync(CancellationToken ct) => OpenAsync(_connectionString, ct);

    /// <summary>A connection for <c>Transactions.RunAsync</c>; on PostgreSQL, from the transaction pool.</summary>
    public Task<DbConnection> OpenForTransactionAsync(CancellationToken ct) => OpenAsync(_transactionConnectionString, ct);

    private async Task<DbConnection> OpenAsync(string connectionString, CancellationToken ct)
    {
        var connection = Dialect.CreateConnection(connectionString);
        await connection.OpenAsync(ct);
        if (Provider == DatabaseProvider.Sqlite && Interlocked.Exchange(ref _sqliteWal, 1) == 0)
        {
            // Write-ahead logging (kept in the file once set): readers never wait for the writer.
            await using var pragma = connection.CreateCommand();
            pragma.CommandText = "PRAGMA journal_mode=WAL;";
            await pragma.ExecuteNonQueryAsync(ct);
        }
        return connection;
    }

    /// <summary>
    /// Starts the transaction every money-moving write runs in. SQLite takes the write lock up
    /// front (BEGIN IMMEDIATE) so two writers never deadlock on a read-then-write upgrade.
    /// </summary>
    public static async Task<DbTransaction> BeginAsync(DbConnection connection, CancellationToken ct) =>
        connection is SqliteConnection sqlite
            ? sqlite.BeginTransaction(deferred: false)
            : await connection.BeginTransactionAsync(IsolationLevel.ReadCommitted, ct);

    internal static string ResolveConnectionString(DatabaseOptions o, string contentRoot)
    {
        if (!string.IsNullOrWhiteSpace(o.ConnectionString))
        {
            return o.Provider switch
            {
                DatabaseProvider.Sqlite => NormaliseSqlite(o.ConnectionString),
                DatabaseProvider.Postgres => NormalisePostgres(o.ConnectionString),
                _ => o.ConnectionString,
            };
        }
        if (o.Provider != DatabaseProvider.Sqlite)
        {
            throw new InvalidOperationException($"Database:ConnectionString is required for provider {o.Provider}.");
        }
        var folder = Path.Combine(contentRoot, "App_Data");
        Directory.CreateDirectory(folder);
        return NormaliseSqlite($"Data Source={Path.Combine(folder, "loyalty.db")}");
    }

    /// <summary>
    /// Statements are few and fixed, so Npgsql prepares them on the server after first use (no parse
    /// and plan per call), unless the connection string sets its own value.
    /// </summary>
    private static string NormalisePostgres(string cs)
    {
        var builder = new NpgsqlConnectionStringBuilder(cs);
        if (!cs.Contains("Auto Prepare", StringComparison.OrdinalIgnoreCase)) builder.MaxAutoPrepare = 100;
        if (!cs.Contains("Reset On Close", StringComparison.OrdinalIgnoreCase)) builder.NoResetOnClose = true;
        // Statements from concurrent requests outside a transaction share connections and are written
        // together: fewer round trips and system calls per checkout (A/B with bench/: better in each of 3 pairs).
        if (!cs.Contains("Multiplexing", StringComparison.OrdinalIgnoreCase)) builder.Multiplexing = true;
        return builder.ToString();
    }

    /// <summary>
    /// Two pools, both bounded: transactions hold a connection across round trips (and the commit's
    /// flush to disk), so when every connection of one shared pool was in a transaction the quotes and
    /// look-ups queued behind them while the CPU idled. The multiplexed pool has its own few connections;
    /// the transaction pool takes the connection string's <c>Maximum Pool Size</c>. A connection string
    /// that turns multiplexing off keeps one pool.
    /// </summary>
    internal static (string Statements, string Transactions) SplitPostgresPools(string cs, int multiplexedConnections)
    {
        var builder = new NpgsqlConnectionStringBuilder(cs);
        if (!builder.Multiplexing || multiplexedConnections <= 0) return (cs, cs);
        var statements = new NpgsqlConnectionStringBuilder(cs) { MaxPoolSize = multiplexedConnections };
        if (statements.MinPoolSize > multiplexedConnections) statements.MinPoolSize = multiplexedConnections;
        builder.Multiplexing = false;
        return (statements.ToString(), builder.ToString());
    }

    private static string NormaliseSqlite(string cs)
    {
        var builder = new SqliteConnectionStringBuilder(cs) { ForeignKeys = true, Pooling = true, DefaultTimeout = 30 };
        return builder.ToString();
    }
}

/// <summary>Dapper settings shared by every provider; timestamps are UTC everywhere.</summary>
public static class DapperSetup
{
    private static int _configured;

    public static void Configure()
    {
        if (Interlocked.Exchange(ref _configured, 1) == 1) return;
        DefaultTypeMap.MatchNamesWithUnderscores = true;
        SqlMapper.RemoveTypeMap(typeof(DateTime));
        SqlMapper.RemoveTypeMap(typeof(DateTime?));
        SqlMapper.AddTypeHandler(new UtcDateTimeHandler());
    }

    /// <summary>
    /// SQLite has no timestamp type: we store ISO-8601 UTC text with a fixed width so that text
    /// order is time order. PostgreSQL gets timestamptz, SQL Server datetime2 (UTC by convention).
    /// </summary>
    public static void BindUtc(IDbDataParameter parameter, DateTime value)
    {
        var utc = value.Kind switch
        {
            DateTimeKind.Local => value.ToUniversalTime(),
            _ => DateTime.SpecifyKind(value, DateTimeKind.Utc),
        };
        switch (parameter)
        {
            case SqliteParameter:
                parameter.DbType = DbType.String;
                parameter.Value = utc.ToString(SqliteFormat, System.Globalization.CultureInfo.InvariantCulture);
                break;
            case SqlParameter:
                parameter.DbType = DbType.DateTime2;
                parameter.Value = utc;
                break;
            default:
                parameter.Value = utc;
                break;
        }
    }

    /// <summary>Binds text; on SQL Server with one size for all short strings, as Dapper does, so one plan serves them all.</summary>
    public static void BindText(IDbDataParameter parameter, string value)
    {
        parameter.Value = value;
        if (parameter is SqlParameter) parameter.Size = value.Length <= 4000 ? 4000 : -1;
    }

    private const string SqliteFormat = "yyyy-MM-dd HH:mm:ss.fffffff";

    private sealed class UtcDateTimeHandler : SqlMapper.TypeHandler<DateTime>
    {
        public override void SetValue(IDbDataParameter parameter, DateTime value) => BindUtc(parameter, value);

        public override DateTime Parse(object value) => value switch
        {
            DateTime d => d.Kind == DateTimeKind.Utc ? d : DateTime.SpecifyKind(d, DateTimeKind.Utc),
            DateTimeOffset o => o.UtcDateTime,
            string s => DateTime.SpecifyKind(
                DateTime.Parse(s, System.Globalization.CultureInfo.InvariantCulture,
                    System.Globalization.DateTimeStyles.AdjustToUniversal | System.Globalization.DateTimeStyles.AssumeUniversal),
                DateTimeKind.Utc),
            _ => throw new InvalidCastException($"Cannot read {value.GetType()} as a UTC timestamp."),
        };
    }
}
