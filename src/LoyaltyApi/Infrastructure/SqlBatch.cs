using System.Collections.Concurrent;
using System.Data;
using System.Data.Common;
using System.Reflection;
using System.Text;
using System.Text.RegularExpressions;
using Dapper;

namespace LoyaltyApi.Infrastructure;

/// <summary>
/// Several statements sent to the database in one round trip. Each statement keeps its own
/// parameters: their names get a per-statement prefix, so the same const SQL can appear twice.
/// All three engines accept several ';'-separated statements in one command.
/// </summary>
public sealed partial class SqlBatch(Db db)
{
    private static readonly ConcurrentDictionary<(string Sql, int Index), string> Renamed = new();
    private static readonly ConcurrentDictionary<Type, PropertyInfo[]> Properties = new();
    private readonly StringBuilder _sql = new();
    private readonly DynamicParameters _args = new();

    public int Count { get; private set; }

    [GeneratedRegex(@"@(\w+)")]
    private static partial Regex Parameter();

    public SqlBatch Add(string portableSql, object args)
    {
        var index = Count++;
        var rendered = db.Sql(portableSql);
        var sql = Renamed.GetOrAdd((rendered, index), static k => Parameter().Replace(k.Sql, m => $"@b{k.Index}_{m.Groups[1].Value}").TrimEnd().TrimEnd(';'));
        _sql.Append(sql).Append(";\n");
        foreach (var p in Properties.GetOrAdd(args.GetType(), static t => t.GetProperties()))
        {
            var value = p.GetValue(args);
            var name = $"b{index}_{p.Name}";
            if (value is null) _args.Add(name, null, DbTypeOf(p.PropertyType));
            else _args.Add(name, value);
        }
        return this;
    }

    public async Task ExecuteAsync(DbConnection connection, DbTransaction tx, CancellationToken ct)
    {
        if (Count == 0) return;
        await connection.ExecuteAsync(new CommandDefinition(_sql.ToString(), _args, tx, cancellationToken: ct));
    }

    public Task<SqlMapper.GridReader> QueryMultipleAsync(DbConnection connection, DbTransaction? tx, CancellationToken ct) =>
        connection.QueryMultipleAsync(new CommandDefinition(_sql.ToString(), _args, tx, cancellationToken: ct));

    // Nulls carry no type of their own; PostgreSQL needs one to bind them.
    private static DbType DbTypeOf(Type type) => (Nullable.GetUnderlyingType(type) ?? type) switch
    {
        var t when t == typeof(long) => DbType.Int64,
        var t when t == typeof(int) => DbType.Int32,
        var t when t == typeof(DateTime) => DbType.DateTime,
        _ => DbType.String,
    };
}
