using System.Collections.Concurrent;
using System.Data;
using System.Data.Common;
using System.Linq.Expressions;
using System.Text;
using System.Text.RegularExpressions;
using Dapper;

namespace LoyaltyApi.Infrastructure;

/// <summary>
/// Several statements sent to the database in one round trip. Each statement keeps its own
/// parameters: their names get a per-statement prefix, so the same const SQL can appear twice.
/// All three engines accept several ';'-separated statements in one command.
/// </summary>
/// <param name="maxParameters">Parameters per command; 0 takes the provider's limit (tests set a small one).</param>
public sealed partial class SqlBatch(Db db, int maxParameters = 0)
{
    private static readonly ConcurrentDictionary<(string Sql, int Index), string> Renamed = new();
    private static readonly ConcurrentDictionary<(string Sql, int Index, int Rows), string> RenamedRows = new();
    private static readonly ConcurrentDictionary<Type, Getter[]> Getters = new();
    private readonly StringBuilder _sql = new();
    private readonly BatchParameters _args = new();
    // Where each statement ends in the text and in the parameters, so a batch can be cut at statement boundaries.
    private readonly List<(int SqlEnd, int ArgsEnd)> _ends = [];

    private sealed record Getter(string Name, Type Type, Func<object, object?> Get);

    public int Count { get; private set; }

    [GeneratedRegex(@"@(\w+)")]
    private static partial Regex Parameter();

    public SqlBatch Add(string portableSql, object args)
    {
        var index = Count++;
        var rendered = db.Sql(portableSql);
        var sql = Renamed.GetOrAdd((rendered, index), static k => Parameter().Replace(k.Sql, m => $"@b{k.Index}_{m.Groups[1].Value}").TrimEnd().TrimEnd(';'));
        _sql.Append(sql).Append(";\n");
        Bind(args, $"b{index}_");
        _ends.Add((_sql.Length, _args.Items.Count));
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
            var count = Math.Min(RowsPerInsert, rows.Count - start);
            var index = Count++;
            var sql = RenamedRows.GetOrAdd((rendered, index, count), static k => MultiRow(k.Sql, k.Index, k.Rows));
            _sql.Append(sql).Append(";\n");
            for (var r = 0; r < count; r++) Bind(rows[start + r], $"b{index}_{r}_");
            _ends.Add((_sql.Length, _args.Items.Count));
        }
        return this;
    }

    private static string MultiRow(string sql, int index, int rows)
    {
        var text = sql.TrimEnd().TrimEnd(';');
        var values = text.LastIndexOf("VALUES", StringComparison.Ordinal);
        if (values < 0 || !text.EndsWith(')')) throw new InvalidOperationException("Not a single-row INSERT ... VALUES (...): " + sql);
        var head = text[..(values + "VALUES".Length)];
        var tuple = text[(values + "VALUES".Length)..].Trim();
        var sb = new StringBuilder(head);
        for (var r = 0; r < rows; r++)
        {
            sb.Append(r == 0 ? "\n    " : ",\n    ").Append(Parameter().Replace(tuple, m => $"@b{index}_{r}_{m.Groups[1].Value}"));
        }
        return sb.ToString();
    }

    private void Bind(object args, string prefix)
    {
        foreach (var g in Getters.GetOrAdd(args.GetType(), CompileGetters))
        {
            _args.Items.Add((prefix + g.Name, g.Get(args), g.Type));
        }
    }

    private static Getter[] CompileGetters(Type type) => type.GetProperties().Select(p =>
    {
        var instance = Expression.Parameter(typeof(object));
        var body = Expression.Convert(Expression.Property(Expression.Convert(instance, type), p), typeof(object));
        return new Getter(p.Name, p.PropertyType, Expression.Lambda<Func<object, object?>>(body, instance).Compile());
    }).ToArray();

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
                command.Parameters.Add(p);
            }
        }
    }

    private int ParameterLimit => maxParameters > 0 ? maxParameters : db.Dialect.MaxParametersPerCommand;

    public async Task ExecuteAsync(DbConnection connection, DbTransaction tx, CancellationToken ct)
    {
        RefuseAfterCommit(tx);
        if (Count == 0) return;
        var limit = ParameterLimit;
        if (_args.Items.Count <= limit)
        {
            await connection.ExecuteAsync(new CommandDefinition(_sql.ToString(), _args, tx, cancellationToken: ct));
            return;
        }
        // SQL Server takes at most 2 100 parameters per command: a very long receipt is sent in
        // several commands, cut between statements, in the same transaction.
        var text = _sql.ToString();
        var (sqlStart, argsStart) = (0, 0);
        for (var i = 0; i < _ends.Count; i++)
        {
            var last = i == _ends.Count - 1;
            if (!last && _ends[i + 1].ArgsEnd - argsStart <= limit) continue;
            var part = new BatchParameters();
            part.Items.AddRange(_args.Items.Skip(argsStart).Take(_ends[i].ArgsEnd - argsStart));
            await connection.ExecuteAsync(new CommandDefinition(text[sqlStart.._ends[i].SqlEnd], part, tx, cancellationToken: ct));
            (sqlStart, argsStart) = _ends[i];
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
        if (db.Dialect.CommitInBatch is { } commit && _args.Items.Count <= ParameterLimit)
        {
            _sql.Append(commit).Append(";\n");
            Count++;
            await connection.ExecuteAsync(new CommandDefinition(_sql.ToString(), _args, tx, cancellationToken: ct));
        }
        else
        {
            await ExecuteAsync(connection, tx, ct);
            await tx.CommitAsync(ct);
        }
        Transactions.MarkCommitted(tx);
    }

    public Task<SqlMapper.GridReader> QueryMultipleAsync(DbConnection connection, DbTransaction? tx, CancellationToken ct)
    {
        RefuseAfterCommit(tx);
        return connection.QueryMultipleAsync(new CommandDefinition(_sql.ToString(), _args, tx, cancellationToken: ct));
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
