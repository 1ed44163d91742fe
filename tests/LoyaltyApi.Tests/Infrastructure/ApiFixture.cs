using System.Net;
using System.Net.Http.Headers;
using System.Net.Http.Json;
using System.Security.Claims;
using System.Text;
using System.Text.Json;
using Dapper;
using LoyaltyApi.Infrastructure;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Mvc.Testing;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;
using Microsoft.IdentityModel.JsonWebTokens;
using Microsoft.IdentityModel.Tokens;
using Xunit;

namespace LoyaltyApi.Tests.Infrastructure;

/// <summary>
/// The service under test, started in-process over a real database, with a program, two merchants
/// (the brand and a partner), their stores and pos keys already set up.
/// </summary>
public abstract class ApiFixture : IAsyncLifetime
{
    public const string AdminKey = "test-admin-key-4f1c9a7e2b";
    public const string JwtKey = "test-jwt-signing-key-0123456789abcdef0123456789";
    public const string JwtIssuer = "loyalty-test";
    public const string JwtAudience = "loyalty-app";
    public const string Currency = "USD";

    private WebApplicationFactory<Program>? _factory;
    private int _sequence;

    public abstract ITestDatabase Database { get; }
    public TestClock Clock { get; } = new(new DateTimeOffset(2026, 3, 2, 9, 0, 0, TimeSpan.Zero));
    public CapturedLogs Logs { get; } = new();
    public WebApplicationFactory<Program> Factory => _factory!;

    public HttpClient Admin { get; private set; } = null!;
    public HttpClient Anonymous { get; private set; } = null!;
    /// <summary>pos key of the brand, any store.</summary>
    public HttpClient BrandPos { get; private set; } = null!;
    /// <summary>pos key of the brand, limited to <see cref="BrandStoreId"/>.</summary>
    public HttpClient BrandStorePos { get; private set; } = null!;
    public HttpClient PartnerPos { get; private set; } = null!;
    public string BrandPosKey { get; private set; } = "";

    public long BrandId { get; private set; }
    public long PartnerId { get; private set; }
    public long BrandStoreId { get; private set; }
    public long BrandStore2Id { get; private set; }
    public long PartnerStoreId { get; private set; }

    /// <summary>The program every test starts from: 1 point per 1.00, 1 point pays 0.01, 50% cap, 14 days pending, 365 days life.</summary>
    public static object DefaultProgram => new
    {
        currency = Currency, timeZone = "Europe/Berlin", earnRateBps = 10_000, pointValueMinor = 1, maxRedeemShareBps = 5_000,
        activationDelayDays = 14, pointsLifetimeDays = 365, expiryRounding = "EndOfDay", welcomeBonusPoints = 0,
    };

    protected virtual Task PrepareDatabaseAsync() => Task.CompletedTask;

    /// <summary>The connection string the service is given; a fixture may narrow the database's own (a smaller pool).</summary>
    protected virtual string ServiceConnectionString => Database.ConnectionString;

    /// <summary>Rate limit per client; high for the suites, low where the limit itself is tested.</summary>
    protected virtual int PermitsPerSecond => 100_000;

    public async Task InitializeAsync()
    {
        await PrepareDatabaseAsync();
        _factory = new WebApplicationFactory<Program>().WithWebHostBuilder(b =>
        {
            b.UseEnvironment("Testing");
            b.UseSetting("Database:Provider", Database.Provider.ToString());
            b.UseSetting("Database:ConnectionString", ServiceConnectionString);
            b.UseSetting("Database:MigrateOnStartup", "true");
            b.UseSetting("Auth:AdminApiKey", AdminKey);
            b.UseSetting("Auth:Jwt:SigningKey", JwtKey);
            b.UseSetting("Auth:Jwt:Issuer", JwtIssuer);
            b.UseSetting("Auth:Jwt:Audience", JwtAudience);
            b.UseSetting("PointsLifecycle:IntervalSeconds", "0");
            // The tests run the jobs themselves, against the test clock.
            b.UseSetting("Idempotency:PurgeIntervalSeconds", "0");
            b.UseSetting("Limits:PermitsPerSecond", PermitsPerSecond.ToString(System.Globalization.CultureInfo.InvariantCulture));
            b.UseSetting("Limits:Burst", PermitsPerSecond.ToString(System.Globalization.CultureInfo.InvariantCulture));
            b.ConfigureServices(s =>
            {
                s.AddSingleton<TimeProvider>(Clock);
                s.AddSingleton<ILoggerProvider>(Logs);
            });
        });
        Anonymous = _factory.CreateClient();
        Admin = Client(AdminKey);
        (await Admin.PutAsJsonAsync("/v1/program", DefaultProgram)).EnsureSuccessStatusCode();
        BrandId = await CreateAsync("/v1/merchants", new { name = "Brand", kind = "Brand" });
        PartnerId = await CreateAsync("/v1/merchants", new { name = "Partner Cafe", kind = "Partner" });
        BrandStoreId = await CreateAsync($"/v1/merchants/{BrandId}/stores", new { code = "B1", name = "Brand Main St" });
        BrandStore2Id = await CreateAsync($"/v1/merchants/{BrandId}/stores", new { code = "B2", name = "Brand Airport" });
        PartnerStoreId = await CreateAsync($"/v1/merchants/{PartnerId}/stores", new { code = "P1", name = "Partner Cafe 1" });
        BrandPosKey = await CreateKeyAsync("brand pos", Roles.Pos, BrandId, null);
        BrandPos = Client(BrandPosKey);
        BrandStorePos = Client(await CreateKeyAsync("brand store 1 till", Roles.Pos, BrandId, BrandStoreId));
        PartnerPos = Client(await CreateKeyAsync("partner pos", Roles.Pos, PartnerId, null));
    }

    public async Task DisposeAsync()
    {
        if (_factory is not null) await _factory.DisposeAsync();
        if (Database is IDisposable d) d.Dispose();
    }

    public HttpClient Client(string apiKey)
    {
        var c = Factory.CreateClient();
        c.DefaultRequestHeaders.Add(ApiKeys.Header, apiKey);
        return c;
    }

    public HttpClient MemberClient(long memberId, string? signingKey = null)
    {
        var c = Factory.CreateClient();
        c.DefaultRequestHeaders.Authorization = new AuthenticationHeaderValue("Bearer", MemberToken(memberId, signingKey));
        return c;
    }

    public static string MemberToken(long memberId, string? signingKey = null) =>
        new JsonWebTokenHandler().CreateToken(new SecurityTokenDescriptor
        {
            Issuer = JwtIssuer,
            Audience = JwtAudience,
            Subject = new ClaimsIdentity([new Claim("sub", memberId.ToString(System.Globalization.CultureInfo.InvariantCulture))]),
            Expires = DateTime.UtcNow.AddHours(1),
            SigningCredentials = new SigningCredentials(new SymmetricSecurityKey(Encoding.UTF8.GetBytes(signingKey ?? JwtKey)), SecurityAlgorithms.HmacSha256),
        });

    public async Task<string> CreateKeyAsync(string name, string role, long? merchantId, long? storeId)
    {
        var r = await Admin.PostAsJsonAsync("/v1/api-clients", new { name, role, merchantId, storeId });
        Assert.Equal(HttpStatusCode.Created, r.StatusCode);
        return (await r.Content.ReadFromJsonAsync<JsonElement>()).GetProperty("apiKey").GetString()!;
    }

    private async Task<long> CreateAsync(string path, object body)
    {
        var r = await Admin.PostAsJsonAsync(path, body);
        Assert.Equal(HttpStatusCode.Created, r.StatusCode);
        return (await r.Content.ReadFromJsonAsync<JsonElement>()).GetProperty("id").GetInt64();
    }

    /// <summary>A value no other test in this run uses.</summary>
    public string Unique(string prefix) => $"{prefix}{Interlocked.Increment(ref _sequence):D6}";

    public string UniquePhone() => $"+4915{Interlocked.Increment(ref _sequence) + 10_000_000:D8}";

    /// <summary>Enrolls a member with a fresh card; returns the member id and the card number.</summary>
    public async Task<(long MemberId, string Card)> EnrollAsync()
    {
        var card = Unique("C9000");
        var r = await Admin.PostAsJsonAsync("/v1/members", new { phone = UniquePhone(), name = "Test Member", cardNumber = card });
        Assert.Equal(HttpStatusCode.Created, r.StatusCode);
        return ((await r.Content.ReadFromJsonAsync<JsonElement>()).GetProperty("id").GetInt64(), card);
    }

    public async Task AdjustAsync(long memberId, long points, string reason = "test credit")
    {
        var r = await Admin.PostAsJsonAsync($"/v1/members/{memberId}/adjustments", new { points, reason });
        Assert.Equal(HttpStatusCode.Created, r.StatusCode);
    }

    public object PurchaseBody(string card, decimal total, long redeem = 0, string? receipt = null, long? storeId = null, string currency = Currency) => new
    {
        storeId = storeId ?? BrandStoreId,
        receiptNumber = receipt ?? Unique("R"),
        cardNumber = card,
        occurredAt = Clock.Now,
        currency,
        total,
        lines = new[] { new { sku = "SKU-1", category = "food", quantity = 1, amount = total } },
        pointsToRedeem = redeem,
    };

    public async Task<JsonElement> BalanceAsync(long memberId)
    {
        var r = await Admin.GetAsync($"/v1/members/{memberId}/balance");
        Assert.Equal(HttpStatusCode.OK, r.StatusCode);
        return await r.Content.ReadFromJsonAsync<JsonElement>();
    }

    /// <summary>Every item of a paged list, following nextCursor to the last page; checks that ids only ever rise and the page size holds.</summary>
    public async Task<List<JsonElement>> ReadAllPagesAsync(HttpClient client, string path, int limit = 100)
    {
        var items = new List<JsonElement>();
        string? cursor = null;
        do
        {
            var r = await client.GetAsync($"{path}?limit={limit}" + (cursor is null ? "" : $"&cursor={Uri.EscapeDataString(cursor)}"));
            Assert.Equal(HttpStatusCode.OK, r.StatusCode);
            var page = await r.Content.ReadFromJsonAsync<JsonElement>();
            var got = page.GetProperty("items").EnumerateArray().ToList();
            Assert.True(got.Count <= limit, $"{path}: {got.Count} items on a page of {limit}");
            cursor = page.GetProperty("nextCursor").GetString();
            Assert.True(cursor is null || got.Count == limit, $"{path}: a short page ({got.Count} of {limit}) that is not the last");
            items.AddRange(got);
        }
        while (cursor is not null);
        var ids = items.Select(i => i.GetProperty("id").GetInt64()).ToList();
        Assert.True(ids.SequenceEqual(ids.Order()) && ids.Distinct().Count() == ids.Count, $"{path}: ids not strictly rising across pages");
        return items;
    }

    public async Task<T> ScalarAsync<T>(string sql, object? args = null)
    {
        await using var c = Database.Open();
        return (await c.ExecuteScalarAsync<T>(sql, args))!;
    }

    public async Task<List<T>> QueryAsync<T>(string sql, object? args = null)
    {
        await using var c = Database.Open();
        return (await c.QueryAsync<T>(sql, args)).ToList();
    }

    /// <summary>
    /// The ledger's accounting identity for every member, checked straight in the database and
    /// through the balance endpoint: sum(ledger) = points left in lots − debt, the balance shown
    /// is that sum less lots past expiry, no lot is below zero or above its grant, refunds never
    /// reverse or return more than the purchase earned or redeemed, and each redemption's lot
    /// allocations add up to it.
    /// </summary>
    public async Task AssertLedgerInvariantsAsync()
    {
        DapperSetup.Configure();
        var now = Clock.Now.UtcDateTime;
        var rows = await QueryAsync<InvariantRow>("""
            SELECT a.member_id,
                   (SELECT COALESCE(SUM(e.points), 0) FROM ledger_entries e WHERE e.member_id = a.member_id) AS ledger,
                   (SELECT COALESCE(SUM(l.remaining_points), 0) FROM point_lots l WHERE l.member_id = a.member_id) AS lots,
                   a.debt_points AS debt,
                   (SELECT COALESCE(SUM(l.remaining_points), 0) FROM point_lots l WHERE l.member_id = a.member_id AND l.expires_at <= @Now) AS overdue
            FROM point_accounts a
            """, new { Now = now });
        foreach (var row in rows)
        {
            Assert.True(row.Ledger == row.Lots - row.Debt, $"member {row.MemberId}: ledger {row.Ledger} != lots {row.Lots} - debt {row.Debt}");
            Assert.True(row.Debt >= 0, $"member {row.MemberId}: negative debt");
            var balance = await BalanceAsync(row.MemberId);
            var shown = balance.GetProperty("available").GetInt64() + balance.GetProperty("pending").GetInt64();
            Assert.True(shown == row.Ledger - row.Overdue, $"member {row.MemberId}: balance {shown} != ledger {row.Ledger} - overdue {row.Overdue}");
        }
        Assert.Equal(0, await ScalarAsync<long>("SELECT COUNT(*) FROM point_lots WHERE remaining_points < 0 OR remaining_points > granted_points"));
        Assert.Equal(0, await ScalarAsync<long>("SELECT COUNT(*) FROM purchases WHERE points_reversed > points_earned OR points_returned > points_redeemed OR refunded_minor > total_minor"));
        // Every grant in the ledger points at the lot it created.
        Assert.Equal(0, await ScalarAsync<long>("""
            SELECT COUNT(*) FROM ledger_entries e LEFT JOIN point_lots l ON l.id = e.lot_id
            WHERE e.points > 0 AND (l.id IS NULL OR l.member_id <> e.member_id OR l.granted_points <> e.points)
            """));
        Assert.Equal(0, await ScalarAsync<long>("""
            SELECT COUNT(*) FROM purchases p WHERE p.points_earned > 0 AND (p.earn_lot_id IS NULL
               OR p.earn_lot_id <> (SELECT l.id FROM point_lots l WHERE l.purchase_id = p.id AND l.source = 'purchase'))
            """));
        Assert.Equal(0, await ScalarAsync<long>("""
            SELECT COUNT(*) FROM purchases p
            WHERE p.points_redeemed <> (SELECT COALESCE(SUM(r.points), 0) FROM redemption_allocations r WHERE r.purchase_id = p.id)
            """));
        // The hot tables carry no foreign keys (migration 0003): no row may point at nothing.
        foreach (var (name, sql) in OrphanChecks)
        {
            Assert.True(await ScalarAsync<long>(sql) == 0, $"rows pointing at nothing: {name}");
        }
    }

    private static readonly (string Name, string Sql)[] OrphanChecks =
    [
        ("purchase member/merchant/store", """
            SELECT COUNT(*) FROM purchases p
            WHERE NOT EXISTS (SELECT 1 FROM members m WHERE m.id = p.member_id)
               OR NOT EXISTS (SELECT 1 FROM stores s WHERE s.id = p.store_id AND s.merchant_id = p.merchant_id)
               OR (p.earn_lot_id IS NOT NULL AND NOT EXISTS (SELECT 1 FROM point_lots l
                   WHERE l.id = p.earn_lot_id AND l.member_id = p.member_id AND l.purchase_id = p.id AND l.source = 'purchase'))
            """),
        ("lot member/purchase", """
            SELECT COUNT(*) FROM point_lots l
            WHERE NOT EXISTS (SELECT 1 FROM members m WHERE m.id = l.member_id)
               OR (l.purchase_id IS NOT NULL AND NOT EXISTS (SELECT 1 FROM purchases p WHERE p.id = l.purchase_id AND p.member_id = l.member_id))
            """),
        ("ledger entry member/purchase/refund", """
            SELECT COUNT(*) FROM ledger_entries e
            WHERE NOT EXISTS (SELECT 1 FROM members m WHERE m.id = e.member_id)
               OR (e.purchase_id IS NOT NULL AND NOT EXISTS (SELECT 1 FROM purchases p WHERE p.id = e.purchase_id AND p.member_id = e.member_id))
               OR (e.refund_id IS NOT NULL AND NOT EXISTS (SELECT 1 FROM refunds r WHERE r.id = e.refund_id AND r.member_id = e.member_id))
               OR (e.lot_id IS NOT NULL AND NOT EXISTS (SELECT 1 FROM point_lots l WHERE l.id = e.lot_id AND l.member_id = e.member_id))
            """),
        ("redemption allocation", """
            SELECT COUNT(*) FROM redemption_allocations r
            WHERE NOT EXISTS (SELECT 1 FROM purchases p WHERE p.id = r.purchase_id AND p.member_id = r.member_id)
               OR NOT EXISTS (SELECT 1 FROM point_lots l WHERE l.id = r.lot_id AND l.member_id = r.member_id)
            """),
        ("refund purchase/member/store", """
            SELECT COUNT(*) FROM refunds r
            WHERE NOT EXISTS (SELECT 1 FROM purchases p JOIN stores s ON s.id = r.store_id
                              WHERE p.id = r.purchase_id AND p.member_id = r.member_id AND s.merchant_id = p.merchant_id)
            """),
        ("refund line", "SELECT COUNT(*) FROM refund_lines x WHERE NOT EXISTS (SELECT 1 FROM refunds r WHERE r.id = x.refund_id)"),
    ];
}

public sealed class InvariantRow
{
    public long MemberId { get; set; }
    public long Ledger { get; set; }
    public long Lots { get; set; }
    public long Debt { get; set; }
    public long Overdue { get; set; }
}

public sealed class SqliteApiFixture : ApiFixture
{
    private readonly SqliteTestDatabase _database = new();
    public override ITestDatabase Database => _database;
}

public sealed class PostgresApiFixture(PostgresTestDatabase database) : ApiFixture
{
    public override ITestDatabase Database => database;
    protected override Task PrepareDatabaseAsync() => database.ResetAsync();
}

/// <summary>Ledger entries grouped by an owner (member, purchase or refund id) and type: what the suites compare with what was acknowledged.</summary>
public sealed class LedgerGroup
{
    public long Owner { get; set; }
    public string EntryType { get; set; } = "";
    public long Entries { get; set; }
    public long Points { get; set; }
}

/// <summary>Each test ends by checking the ledger's invariants over the whole database.</summary>
public abstract class ApiTests(ApiFixture fx) : IAsyncLifetime
{
    protected ApiFixture Fx { get; } = fx;

    public virtual Task InitializeAsync() => Task.CompletedTask;

    public virtual Task DisposeAsync() => Fx.AssertLedgerInvariantsAsync();

    protected static async Task<JsonElement> AssertProblemAsync(HttpResponseMessage response, HttpStatusCode status, string code, string? field = null)
    {
        var text = await response.Content.ReadAsStringAsync();
        Assert.True(status == response.StatusCode, $"expected {(int)status}, got {(int)response.StatusCode}: {text}");
        Assert.Equal("application/problem+json", response.Content.Headers.ContentType?.MediaType);
        var problem = JsonDocument.Parse(text).RootElement;
        Assert.Equal((int)status, problem.GetProperty("status").GetInt32());
        Assert.Equal(code, problem.GetProperty("code").GetString());
        if (field is not null) Assert.Equal(field, problem.GetProperty("field").GetString());
        return problem;
    }

    protected static async Task<JsonElement> ReadAsync(HttpResponseMessage response, HttpStatusCode status)
    {
        var text = await response.Content.ReadAsStringAsync();
        Assert.True(status == response.StatusCode, $"expected {(int)status}, got {(int)response.StatusCode}: {text}");
        return JsonDocument.Parse(text).RootElement;
    }
}
