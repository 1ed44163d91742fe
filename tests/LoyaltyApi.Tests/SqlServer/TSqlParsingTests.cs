using System.Reflection;
using LoyaltyApi.Infrastructure;
using Microsoft.SqlServer.TransactSql.ScriptDom;
using Xunit;

namespace LoyaltyApi.Tests.SqlServer;

/// <summary>SQL Server cannot run here, so every T-SQL script and every statement the service sends to SQL Server is at least parsed.</summary>
public sealed class TSqlParsingTests
{
    private static IList<ParseError> Parse(string sql)
    {
        var parser = new TSql160Parser(initialQuotedIdentifiers: true);
        using var reader = new StringReader(sql);
        parser.Parse(reader, out var errors);
        return errors;
    }

    public static TheoryData<string> Scripts()
    {
        var folder = Path.Combine(AppContext.BaseDirectory, "SqlServerScripts");
        var data = new TheoryData<string>();
        foreach (var file in Directory.GetFiles(folder, "*.sql").OrderBy(f => f)) data.Add(Path.GetFileName(file));
        return data;
    }

    [Theory]
    [MemberData(nameof(Scripts))]
    public void EveryMigrationScriptParsesAsTSql(string script)
    {
        var errors = Parse(File.ReadAllText(Path.Combine(AppContext.BaseDirectory, "SqlServerScripts", script)));

        Assert.True(errors.Count == 0, string.Join("\n", errors.Select(e => $"{script}:{e.Line}: {e.Message}")));
    }

    [Fact]
    public void TheSqlServerScriptsMatchTheOtherProvidersFileForFile()
    {
        var root = Path.Combine(AppContext.BaseDirectory, "SqlServerScripts");
        Assert.NotEmpty(Directory.GetFiles(root, "*.sql"));
        var embedded = typeof(Db).Assembly.GetManifestResourceNames();
        foreach (var provider in new[] { "sqlite", "postgres", "sqlserver" })
        {
            var names = embedded.Where(n => n.StartsWith($"Migrations.{provider}.", StringComparison.Ordinal))
                .Select(n => n[$"Migrations.{provider}.".Length..]).OrderBy(n => n).ToArray();
            Assert.Equal(Directory.GetFiles(root, "*.sql").Select(Path.GetFileName).OrderBy(n => n).ToArray(), names);
        }
    }

    /// <summary>Every const ending in "Sql" in the service is a statement; render it for SQL Server and parse it.</summary>
    public static TheoryData<string> Statements()
    {
        var data = new TheoryData<string>();
        foreach (var type in typeof(Db).Assembly.GetTypes())
        {
            foreach (var field in type.GetFields(BindingFlags.Static | BindingFlags.NonPublic | BindingFlags.Public))
            {
                if (field is { IsLiteral: true } && field.FieldType == typeof(string) && field.Name.EndsWith("Sql", StringComparison.Ordinal))
                {
                    data.Add($"{type.FullName}.{field.Name}");
                }
            }
        }
        return data;
    }

    private static string StatementText(string name)
    {
        var dot = name.LastIndexOf('.');
        var type = typeof(Db).Assembly.GetType(name[..dot])!;
        return (string)type.GetField(name[(dot + 1)..], BindingFlags.Static | BindingFlags.NonPublic | BindingFlags.Public)!.GetRawConstantValue()!;
    }

    [Fact]
    public void TheServiceHasStatementsToCheck() => Assert.True(Statements().Count >= 40, $"only {Statements().Count} statements found");

    [Theory]
    [MemberData(nameof(Statements))]
    public void EveryStatementParsesAsTSql(string statement)
    {
        var sql = new SqlServerDialect().Render(StatementText(statement));

        var errors = Parse(sql);

        Assert.True(errors.Count == 0, $"{statement}:\n{sql}\n" + string.Join("\n", errors.Select(e => $"{e.Line}: {e.Message}")));
        Assert.DoesNotContain("RETURNING", sql);
        Assert.DoesNotContain("LIMIT", sql);
        Assert.DoesNotContain("FOR UPDATE", sql);
    }

    [Fact]
    public void ReturningBecomesOutputInserted()
    {
        var sql = SqlServerDialect.Translate("INSERT INTO t (a)\nVALUES (@A)\nRETURNING id");

        Assert.Equal("INSERT INTO t (a)\nOUTPUT INSERTED.id\nVALUES (@A);", sql);
    }

    [Theory]
    [InlineData("LoyaltyApi.Features.Points.PointsAccount.LockSql",
        "SELECT debt_points\nFROM point_accounts WITH (UPDLOCK, ROWLOCK)\nWHERE member_id = @MemberId;")]
    [InlineData("LoyaltyApi.Features.Points.PointsAccount.LockByCardSql",
        "SELECT cards.id AS card_id, cards.member_id, cards.status, point_accounts.debt_points\n" +
        "FROM point_accounts WITH (UPDLOCK, ROWLOCK)\nJOIN cards ON cards.member_id = point_accounts.member_id\nWHERE cards.card_number = @CardNumber;")]
    public void TheMemberLockBecomesAnUpdateLockHintOnTheAccountRow(string statement, string expected)
    {
        var sql = new SqlServerDialect().Render(StatementText(statement));

        Assert.Equal(expected, sql);
        Assert.Empty(Parse(sql));
    }

    [Theory]
    [InlineData("SELECT a\nFROM t x\nWHERE x.id = @Id\nFOR UPDATE")]
    [InlineData("SELECT t.a\nFROM t\nJOIN u ON u.id = t.u_id\nWHERE t.id = @Id\nFOR UPDATE OF u")]
    public void AForUpdateWithoutItsTableOnALineOfItsOwnIsRefusedRatherThanMisplaced(string sql) =>
        Assert.Throws<InvalidOperationException>(() => SqlServerDialect.Translate(sql));

    [Theory]
    [InlineData("SELECT a\nFROM t\nWHERE id = @Id\nFOR UPDATE", "SELECT a\nFROM t\nWHERE id = @Id")]
    [InlineData("SELECT t.a\nFROM t\nJOIN u ON u.id = t.u_id\nFOR UPDATE OF t", "SELECT t.a\nFROM t\nJOIN u ON u.id = t.u_id")]
    public void SqliteDropsForUpdateBecauseItsWriterLockIsAlreadyHeld(string sql, string expected) =>
        Assert.Equal(expected, new SqliteDialect().Render(sql));

    [Fact]
    public void LimitBecomesOffsetFetch()
    {
        var sql = SqlServerDialect.Translate("SELECT a FROM t\nORDER BY a\nLIMIT @Take");

        Assert.Equal("SELECT a FROM t\nORDER BY a\nOFFSET 0 ROWS FETCH NEXT @Take ROWS ONLY;", sql);
    }
}
