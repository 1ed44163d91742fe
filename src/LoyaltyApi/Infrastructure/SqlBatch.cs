using System.Collections.Concurrent;
using System.Data;
using System.Data.Common;
using System.Linq.Expressions;
using System.Runtime.CompilerServices;
using System.Text;
using System.Text.RegularExpressions;
using Dapper;

namespace LoyaltyApi.Infrastructure;

/// <summary>
/// Several statements sent to the database in one round trip. Each statement keeps its own
/// parameters. On PostgreSQL each statement travels as its own command of a <see cref="DbBatch"/>, its
/// named parameters rewritten once per statement shape to PostgreSQL's <c>$n</c> placeholders, so the driver
/// neither parses nor rewrites the text on every call (<see cref="SqlDialect.SendsStatementsSeparately"/>).
/// SQLite and SQL Server get one command of ';'-separated statements whose parameter names carry a
/// per-statement prefix, so the same const SQL can appear twice.
/// </summary>
/// <param name="maxParameters">
/// Parameters per command where the batch is one command (SQL Server's limit); 0 takes the provider's limit
/// (tests set a small one). A PostgreSQL batch has none: each statement numbers its own placeholders.
/// </param>
public sealed partial class SqlBatch(Db db, int maxParameters = 0)
{
    private static readonly ConcurrentDictionary<(string Sql, int Index), string> Renamed = new();
    private static readonly ConcurrentDictionary<(string Sql, int Index, int Rows), string> RenamedRows = new();
    private static readonly ConcurrentDictionary<Type, Getter[]> Getters = new();
    // Keyed by the statement's text object, not its contents: the statements are consts, and hashing a
    // whole statement on every call is measurable. A string built at run time just misses and is collected.
    private static readonly ConditionalWeakTable<string, PositionalShapes> Positional = new();
    private readonly List<Statement> _statements = [];

    private sealed record Getter(string Name, Type Type, Func<object, object?> Get);

    /// <summary>One statement as added: its rendered text and the arguments of each of its rows.</summary>
    private sealed record Statement(string Sql, object[] Rows, bool MultiRow);

    public int Count => _statements.Count;

    [GeneratedRegex(@"@(\w+)")]
    private static partial Regex Parameter();

    public SqlBatch Add(string portableSql, object args)
    {
        _statements.Add(new Statement(db.Sql(portableSql), [args], MultiRow: false));
        return this;
    }

    /// <summary>Rows per multi-row INSERT: few statement shapes to prepare, few parameters per statement.</summary>
    public const int RowsPerInsert = 10;

    /// <summary>
    /// Adds one INSERT per <see cref="RowsPerInsert"/> rows, from a single-row
    /// <c>INSERT ... VALUES (...)</c>: the VALUES tuple is repeated with each row's own parameters.
    /// </summary>
    public SqlBatch AddRows<T>(string singleRowInsertSql, IReadOnlyList<T> rows) where T : notnull
    {
        var rendered = db.Sql(singleRowInsertSql);
        for (var start = 0; start < rows.Count; start += RowsPerInsert)
        {
            var chunk = new object[Math.Min(RowsPerInsert, rows.Count - start)];
            for (var r = 0; r < chunk.Length; r++) chunk[r] = rows[start + r];
            _statements.Add(new Statement(rendered, chunk, MultiRow: true));
        }
        return this;
    }

    // The VALUES tuple of a single-row INSERT repeated once per row, each copy's parameters named by rename.
    private static string MultiRow(string sql, int rows, Func<string, int, string> rename)
    {
        var text = sql.TrimEnd().TrimEnd(';');
        var values = text.LastIndexOf("VALUES", StringComparison.Ordinal);
        if (values < 0 || !text.EndsWith(')')) throw new InvalidOperationException("Not a single-row INSERT ... VALUES (...): " + sql);
        var head = text[..(values + "VALUES".Length)];
        var tuple = text[(values + "VALUES".Length)..].Trim();
        var sb = new StringBuilder(head);
        for (var r = 0; r < rows; r++)
        {
            sb.Append(r == 0 ? "\n    " : ",\n    ").Append(Parameter().Replace(tuple, m => rename(m.Groups[1].Value, r)));
        }
        return sb.ToString();
    }

    // ---- SQLite and SQL Server: one command, parameters named per statement ----

    private (string Sql, BatchParameters Args, List<(int SqlEnd, int ArgsEnd)> Ends) Named()
    {
        var sql = new StringBuilder();
        var args = new BatchParameters();
        // Where each statement ends in the text and in the parameters, so a batch can be cut at statement boundaries.
        var ends = new List<(int SqlEnd, int ArgsEnd)>(_statements.Count);
        for (var index = 0; index < _statements.Count; index++)
        {
            var s = _statements[index];
            if (s.MultiRow)
            {
                sql.Append(RenamedRows.GetOrAdd((s.Sql, index, s.Rows.Length),
                    static k => MultiRow(k.Sql, k.Rows, (name, r) => $"@b{k.Index}_{r}_{name}")));
                for (var r = 0; r < s.Rows.Length; r++) BindNamed(args, s.Rows[r], $"b{index}_{r}_");
            }
            else
            {
                sql.Append(Renamed.GetOrAdd((s.Sql, index),
                    static k => Parameter().Replace(k.Sql, m => $"@b{k.Index}_{m.Groups[1].Value}").TrimEnd().TrimEnd(';')));
                BindNamed(args, s.Rows[0], $"b{index}_");
            }
            sql.Append(";\n");
            ends.Add((sql.Length, args.Items.Count));
        }
        return (sql.ToString(), args, ends);
    }

    private static void BindNamed(BatchParameters args, object row, string prefix)
    {
        foreach (var g in GettersOf(row.GetType()))
        {
            args.Items.Add((prefix + g.Name, g.Get(row), g.Type));
        }
    }

    private static Getter[] GettersOf(Type type) => Getters.GetOrAdd(type, CompileGetters);

    private static Getter[] CompileGetters(Type type) => type.GetProperties().Select(p =>
    {
        var instance = Expression.Parameter(typeof(object));
        var body = Expression.Convert(Expression.Property(Expression.Convert(instance, type), p), typeof(object));
        return new Getter(p.Name, p.PropertyType, Expression.Lambda<Func<object, object?>>(body, instance).Compile());
    }).ToArray();

    // ---- PostgreSQL: one batch command per statement, $n placeholders ----

    /// <summary>A statement's text with <c>$n</c> placeholders for a given row count, and its parameter names in order.</summary>
    private sealed class PositionalShape(string text, string[] names)
    {
        public string Text { get; } = text;
        /// <summary>The distinct names of one row, in the order of their placeholders.</summary>
        public string[] Names { get; } = names;
        // For each argument type: which getter supplies each name.
        public ConcurrentDictionary<Type, Getter[]> Bindings { get; } = new();
    }

    /// <summary>The shapes of one statement: as written, and as a multi-row INSERT of 1 to <see cref="RowsPerInsert"/> rows.</summary>
    private sealed class PositionalShapes
    {
        public PositionalShape? Single;
        public readonly PositionalShape?[] ByRows = new PositionalShape?[RowsPerInsert + 1];
    }

    private static PositionalShape ShapeOf(Statement s)
    {
        var shapes = Positional.GetValue(s.Sql, static _ => new PositionalShapes());
        return s.MultiRow
            ? shapes.ByRows[s.Rows.Length] ??= ToPositional(s.Sql, s.Rows.Length)
            : shapes.Single ??= ToPositional(s.Sql, 0);
    }

    private static PositionalShape ToPositional(string sql, int rows)
    {
        var names = new List<string>();
        int Position(string name)
        {
            var at = names.IndexOf(name);
            if (at < 0) { names.Add(name); at = names.Count - 1; }
            return at;
        }
        if (rows == 0)
        {
            var single = Parameter().Replace(sql.TrimEnd().TrimEnd(';'), m => "$" + (Position(m.Groups[1].Value) + 1));
            return new PositionalShape(single, [.. names]);
        }
        // Every row repeats the tuple's names, so a row's names are known once the first row is rendered.
        var perRow = 0;
        var text = MultiRow(sql, rows, (name, r) =>
        {
            var at = Position(name);
            if (r == 0) perRow = names.Count;
            return "$" + (r * perRow + at + 1);
        });
        return new PositionalShape(text, [.. names]);
    }

    private static Getter[] BindingOf(PositionalShape shape, Type type) => shape.Bindings.GetOrAdd(type, static (t, names) =>
    {
        var getters = GettersOf(t);
        return names.Select(n => getters.FirstOrDefault(g => g.Name == n)
            ?? throw new InvalidOperationException($"{t} has no property for the parameter @{n}.")).ToArray();
    }, shape.Names);

    private DbBatch PositionalBatch(DbConnection connection, DbTransaction? tx, string? commit)
    {
        var batch = connection.CreateBatch();
        batch.Transaction = tx;
        foreach (var s in _statements)
        {
            var shape = ShapeOf(s);
            var command = batch.CreateBatchCommand();
            command.CommandText = shape.Text;
            foreach (var row in s.Rows)
            {
                foreach (var g in BindingOf(shape, row.GetType()))
                {
                    var p = command.CreateParameter();
                    SetValue(p, g.Get(row), g.Type, g.Name);
                    command.Parameters.Add(p);
                }
            }
            batch.BatchCommands.Add(command);
        }
        if (commit is not null)
        {
            var end = batch.CreateBatchCommand();
            end.CommandText = commit;
            batch.BatchCommands.Add(end);
        }
        return batch;
    }

    /// <summary>
    /// Binds the batch's parameters straight onto the command. Dapper's DynamicParameters reads each
    /// parameter's DbType back, which makes Npgsql infer it from the value on every call (about 6% of
    /// the service's CPU under the benchmark); here every value's type is known.
    /// </summary>
    private sealed class BatchParameters : SqlMapper.IDynamicParameters
    {
        public List<(string Name, object? Value, Type Type)> Items { get; } = new(64);

        public void AddParameters(IDbCommand command, SqlMapper.Identity identity)
        {
            foreach (var (name, value, type) in Items)
            {
                var p = command.CreateParameter();
                p.ParameterName = name;
                SetValue(p, value, type, name);
                command.Parameters.Add(p);
            }
        }
    }

    private static void SetValue(IDbDataParameter p, object? value, Type type, string name)
    {
        switch (value)
        {
            case null:
                p.DbType = DbTypeOf(type);
                p.Value = DBNull.Value;
                break;
            case DateTime t:
                DapperSetup.BindUtc(p, t);
                break;
            case string text:
                DapperSetup.BindText(p, text);
                break;
            case long or int or short or bool or decimal:
                p.Value = value;
                break;
            default:
                // Dapper would have converted enums, lists and custom types; this binder does not.
                throw new NotSupportedException($"SqlBatch cannot bind {value.GetType()} ({name}).");
        }
    }

    private int ParameterLimit => maxParameters > 0 ? maxParameters : db.Dialect.MaxParametersPerCommand;

    public async Task ExecuteAsync(DbConnection connection, DbTransaction tx, CancellationToken ct)
    {
        RefuseAfterCommit(tx);
        if (Count == 0) return;
        if (db.Dialect.SendsStatementsSeparately)
        {
            await using var batch = PositionalBatch(connection, tx, commit: null);
            await batch.ExecuteNonQueryAsync(ct);
            return;
        }
        var (text, args, ends) = Named();
        var limit = ParameterLimit;
        if (args.Items.Count <= limit)
        {
            await connection.ExecuteAsync(new CommandDefinition(text, args, tx, cancellationToken: ct));
            return;
        }
        // SQL Server takes at most 2 100 parameters per command: a very long receipt is sent in
        // several commands, cut between statements, in the same transaction.
        var (sqlStart, argsStart) = (0, 0);
        for (var i = 0; i < ends.Count; i++)
        {
            var last = i == ends.Count - 1;
            if (!last && ends[i + 1].ArgsEnd - argsStart <= limit) continue;
            var part = new BatchParameters();
            part.Items.AddRange(args.Items.Skip(argsStart).Take(ends[i].ArgsEnd - argsStart));
            await connection.ExecuteAsync(new CommandDefinition(text[sqlStart..ends[i].SqlEnd], part, tx, cancellationToken: ct));
            (sqlStart, argsStart) = ends[i];
        }
    }

    /// <summary>
    /// Runs the batch as the transaction's last work and commits it: in the same round trip where the
    /// provider allows (<see cref="SqlDialect.CommitInBatch"/>), otherwise through the transaction object.
    /// <c>Transactions.RunAsync</c> then leaves the transaction alone.
    /// </summary>
    public async Task ExecuteAndCommitAsync(DbConnection connection, DbTransaction tx, CancellationToken ct)
    {
        RefuseAfterCommit(tx);
        if (db.Dialect.SendsStatementsSeparately && db.Dialect.CommitInBatch is { } commit)
        {
            await using var batch = PositionalBatch(connection, tx, commit);
            await batch.ExecuteNonQueryAsync(ct);
        }
        else
        {
            await ExecuteAsync(connection, tx, ct);
            await tx.CommitAsync(ct);
        }
        Transactions.MarkCommitted(tx);
    }

    /// <summary>
    /// One statement outside a transaction, its one row or default: a batch of one, so PostgreSQL gets it with
    /// $n placeholders like every batch. For the statements every checkout sends; the rest use Dapper directly.
    /// </summary>
    public static async Task<T?> QuerySingleOrDefaultAsync<T>(Db db, DbConnection connection, string portableSql, object args, CancellationToken ct)
    {
        await using var results = await new SqlBatch(db).Add(portableSql, args).QueryMultipleAsync(connection, null, ct);
        return await results.ReadSingleOrDefaultAsync<T>();
    }

    /// <summary>Runs the batch and returns its result sets, to be read in the order the statements were added.</summary>
    public async Task<BatchResults> QueryMultipleAsync(DbConnection connection, DbTransaction? tx, CancellationToken ct)
    {
        RefuseAfterCommit(tx);
        if (db.Dialect.SendsStatementsSeparately)
        {
            var batch = PositionalBatch(connection, tx, commit: null);
            try
            {
                return new BatchResults(await batch.ExecuteReaderAsync(ct), batch, ct);
            }
            catch
            {
                await batch.DisposeAsync();
                throw;
            }
        }
        var (text, args, _) = Named();
        return new BatchResults(await connection.ExecuteReaderAsync(new CommandDefinition(text, args, tx, cancellationToken: ct)), null, ct);
    }

    // On PostgreSQL a statement sent after the in-batch COMMIT would run on its own, outside the transaction.
    private static void RefuseAfterCommit(DbTransaction? tx)
    {
        if (Transactions.IsCommitted(tx))
        {
            throw new InvalidOperationException("This transaction was committed with its write batch; nothing may follow that batch.");
        }
    }

    // Nulls carry no type of their own; PostgreSQL needs one to bind them.
    private static DbType DbTypeOf(Type type) => (Nullable.GetUnderlyingType(type) ?? type) switch
    {
        var t when t == typeof(long) => DbType.Int64,
        var t when t == typeof(int) => DbType.Int32,
        var t when t == typeof(short) => DbType.Int16,
        var t when t == typeof(bool) => DbType.Boolean,
        var t when t == typeof(decimal) => DbType.Decimal,
        var t when t == typeof(DateTime) => DbType.DateTime,
        _ => DbType.String,
    };
}

/// <summary>
/// The result sets of a <see cref="SqlBatch"/>, read in the order its statements were added; rows map as
/// Dapper maps them (snake_case columns to properties, UTC timestamps).
/// </summary>
public sealed class BatchResults(DbDataReader reader, IAsyncDisposable? owner, CancellationToken ct) : IAsyncDisposable
{
    private bool _started;

    public async Task<List<T>> ReadAsync<T>()
    {
        await NextAsync();
        var rows = new List<T>();
        Func<DbDataReader, T>? parse = null;
        while (await reader.ReadAsync(ct))
        {
            parse ??= reader.GetRowParser<T>();
            rows.Add(parse(reader));
        }
        return rows;
    }

    /// <summary>The one row of the next result set; throws when it has none or several.</summary>
    public async Task<T> ReadSingleAsync<T>()
    {
        var (found, row) = await ReadAtMostOneAsync<T>();
        return found ? row! : throw new InvalidOperationException("Expected one row, got none.");
    }

    /// <summary>The one row of the next result set, or default when it has none; throws when it has several.</summary>
    public async Task<T?> ReadSingleOrDefaultAsync<T>() => (await ReadAtMostOneAsync<T>()).Row;

    // The single-row reads every checkout makes (the lock, the totals, the new ids) build no list.
    private async Task<(bool Found, T? Row)> ReadAtMostOneAsync<T>()
    {
        await NextAsync();
        if (!await reader.ReadAsync(ct)) return (false, default);
        var row = reader.GetRowParser<T>()(reader);
        if (await reader.ReadAsync(ct)) throw new InvalidOperationException("Expected at most one row, got several.");
        return (true, row);
    }

    private async Task NextAsync()
    {
        if (_started && !await reader.NextResultAsync(ct)) throw new InvalidOperationException("The batch has no more result sets.");
        _started = true;
    }

    public async ValueTask DisposeAsync()
    {
        await reader.DisposeAsync();
        if (owner is not null) await owner.DisposeAsync();
    }
}
