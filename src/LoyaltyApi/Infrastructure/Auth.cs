using System.Collections.Concurrent;
using System.Security.Claims;
using System.Security.Cryptography;
using System.Text;
using System.Text.Encodings.Web;
using Dapper;
using Microsoft.AspNetCore.Authentication;
using Microsoft.AspNetCore.Authentication.JwtBearer;
using Microsoft.Extensions.Options;
using Microsoft.IdentityModel.Tokens;

namespace LoyaltyApi.Infrastructure;

public static class Roles
{
    public const string Admin = "admin";
    public const string Pos = "pos";
    public const string Finance = "finance";
    public const string Analyst = "analyst";
    public static readonly string[] All = [Admin, Pos, Finance, Analyst];
}

public static class Policies
{
    public const string Admin = "admin";
    public const string PosOrAdmin = "pos-or-admin";
    public const string AnyApiClient = "any-api-client";
    public const string Member = "member";
}

public sealed class AuthOptions
{
    public const string Section = "Auth";
    /// <summary>Bootstrap admin key; compared by hash, never logged.</summary>
    public string? AdminApiKey { get; set; }
    public JwtOptions Jwt { get; set; } = new();
}

public sealed class JwtOptions
{
    public string? SigningKey { get; set; }
    public string Issuer { get; set; } = "loyalty-dev";
    public string Audience { get; set; } = "loyalty-app";
    /// <summary>When set, tokens are validated against this OIDC authority's published keys instead.</summary>
    public string? Authority { get; set; }
}

/// <summary>Who is calling, as the handlers need it for object-level checks.</summary>
public sealed record Caller(string Role, string ClientKey, string ClientName, long? MerchantId, long? StoreId, long? MemberId)
{
    public bool IsAdmin => Role == Roles.Admin;

    public static Caller From(ClaimsPrincipal user)
    {
        static long? Long(ClaimsPrincipal u, string type) =>
            long.TryParse(u.FindFirstValue(type), out var v) ? v : null;
        if (user.FindFirstValue(ApiKeyClaims.ClientKey) is { } clientKey)
        {
            return new Caller(user.FindFirstValue(ClaimTypes.Role) ?? "", clientKey,
                user.FindFirstValue(ApiKeyClaims.ClientName) ?? clientKey,
                Long(user, ApiKeyClaims.MerchantId), Long(user, ApiKeyClaims.StoreId), null);
        }
        var sub = Long(user, "sub") ?? Long(user, ClaimTypes.NameIdentifier);
        return new Caller("member", $"member:{sub}", $"member:{sub}", null, null, sub);
    }

    /// <summary>A pos key may act only for its own merchant, and for its own store when it has one.</summary>
    public bool MayActForStore(long merchantId, long storeId) =>
        IsAdmin || (Role == Roles.Pos && MerchantId == merchantId && (StoreId is null || StoreId == storeId));

    /// <summary>Admin, finance and analyst keys see every merchant; any other caller only its own.</summary>
    public bool SeesEveryMerchant => IsAdmin || Role is Roles.Finance or Roles.Analyst;

    public bool MaySeeMerchant(long merchantId) => SeesEveryMerchant || MerchantId == merchantId;

    /// <summary>For list queries: null when every merchant is visible, else the one merchant (0, none, for a caller without one).</summary>
    public long? VisibleMerchant => SeesEveryMerchant ? null : MerchantId ?? 0;
}

public static class ApiKeyClaims
{
    public const string ClientKey = "client_key";
    public const string ClientName = "client_name";
    public const string MerchantId = "merchant_id";
    public const string StoreId = "store_id";
}

public static class ApiKeys
{
    public const string Header = "X-Api-Key";
    public const string Scheme = "ApiKey";

    /// <summary>Keys are 256-bit random secrets, so a plain SHA-256 is enough to store them safely.</summary>
    public static string Hash(string key) => Convert.ToHexStringLower(SHA256.HashData(Encoding.UTF8.GetBytes(key)));

    public static (string Key, string Prefix, string Hash) Generate()
    {
        var prefix = Convert.ToHexStringLower(RandomNumberGenerator.GetBytes(6));
        var secret = Base64Url(RandomNumberGenerator.GetBytes(32));
        var key = $"lk_{prefix}_{secret}";
        return (key, prefix, Hash(key));
    }

    /// <summary>The lookup prefix of a key shaped <c>lk_{12 hex}_{secret}</c>; the secret may itself contain '_'.</summary>
    public static string? PrefixOf(string key) =>
        key.Length > 16 && key.StartsWith("lk_", StringComparison.Ordinal) && key[15] == '_' ? key[3..15] : null;

    private static string Base64Url(byte[] bytes) =>
        Convert.ToBase64String(bytes).TrimEnd('=').Replace('+', '-').Replace('/', '_');
}

public sealed class ApiKeyAuthenticationHandler(
    IOptionsMonitor<AuthenticationSchemeOptions> options,
    ILoggerFactory logger,
    UrlEncoder encoder,
    IOptions<AuthOptions> auth,
    Db db,
    ApiKeyCache cache,
    TimeProvider clock) : AuthenticationHandler<AuthenticationSchemeOptions>(options, logger, encoder)
{
    private sealed class ClientRow
    {
        public long Id { get; set; }
        public string Name { get; set; } = "";
        public string Role { get; set; } = "";
        public long? MerchantId { get; set; }
        public long? StoreId { get; set; }
        public string KeyHash { get; set; } = "";
        public DateTime? RevokedAt { get; set; }
    }

    private const string FindClientSql = """
        SELECT id, name, role, merchant_id, store_id, key_hash, revoked_at
        FROM api_clients
        WHERE key_prefix = @Prefix
        """;

    protected override async Task<AuthenticateResult> HandleAuthenticateAsync()
    {
        if (!Request.Headers.TryGetValue(ApiKeys.Header, out var values)) return AuthenticateResult.NoResult();
        var key = values.ToString();
        if (string.IsNullOrEmpty(key) || key.Length > 200) return AuthenticateResult.Fail("Invalid API key.");
        var hash = ApiKeys.Hash(key);
        var now = clock.GetUtcNow();
        if (cache.TryGet(hash, now, out var cached)) return Success(cached);

        var admin = auth.Value.AdminApiKey;
        if (!string.IsNullOrEmpty(admin) && FixedTimeEquals(hash, ApiKeys.Hash(admin)))
        {
            return Success(cache.Put(hash, now, Principal("bootstrap-admin", "bootstrap-admin", Roles.Admin, null, null)));
        }
        if (ApiKeys.PrefixOf(key) is not { } prefix) return AuthenticateResult.Fail("Invalid API key.");
        await using var connection = await db.OpenAsync(Context.RequestAborted);
        var row = await connection.QuerySingleOrDefaultAsync<ClientRow>(
            new CommandDefinition(db.Sql(FindClientSql), new { Prefix = prefix }, cancellationToken: Context.RequestAborted));
        if (row is null || row.RevokedAt is not null || !FixedTimeEquals(hash, row.KeyHash))
        {
            return AuthenticateResult.Fail("Invalid API key.");
        }
        return Success(cache.Put(hash, now, Principal($"client:{row.Id}", row.Name, row.Role, row.MerchantId, row.StoreId)));
    }

    private AuthenticateResult Success(ClaimsPrincipal principal) =>
        AuthenticateResult.Success(new AuthenticationTicket(principal, ApiKeys.Scheme));

    private static ClaimsPrincipal Principal(string clientKey, string name, string role, long? merchantId, long? storeId)
    {
        var claims = new List<Claim>
        {
            new(ApiKeyClaims.ClientKey, clientKey),
            new(ApiKeyClaims.ClientName, name),
            new(ClaimTypes.Role, role),
        };
        if (merchantId is { } m) claims.Add(new Claim(ApiKeyClaims.MerchantId, m.ToString(System.Globalization.CultureInfo.InvariantCulture)));
        if (storeId is { } s) claims.Add(new Claim(ApiKeyClaims.StoreId, s.ToString(System.Globalization.CultureInfo.InvariantCulture)));
        return new ClaimsPrincipal(new ClaimsIdentity(claims, ApiKeys.Scheme));
    }

    private static bool FixedTimeEquals(string a, string b) =>
        CryptographicOperations.FixedTimeEquals(Encoding.ASCII.GetBytes(a), Encoding.ASCII.GetBytes(b));
}

/// <summary>
/// Validated keys are remembered briefly (keyed by hash) so a busy POS does not cost a lookup per
/// request; revocation takes effect within <see cref="Lifetime"/>.
/// </summary>
public sealed class ApiKeyCache
{
    public static readonly TimeSpan Lifetime = TimeSpan.FromSeconds(30);
    private readonly ConcurrentDictionary<string, (ClaimsPrincipal Principal, DateTimeOffset Until)> _entries = new();

    public bool TryGet(string hash, DateTimeOffset now, out ClaimsPrincipal principal)
    {
        if (_entries.TryGetValue(hash, out var e) && e.Until > now)
        {
            principal = e.Principal;
            return true;
        }
        principal = null!;
        return false;
    }

    public ClaimsPrincipal Put(string hash, DateTimeOffset now, ClaimsPrincipal principal)
    {
        if (_entries.Count > 10_000) _entries.Clear();
        _entries[hash] = (principal, now + Lifetime);
        return principal;
    }

    public void Clear() => _entries.Clear();
}

public static class AuthSetup
{
    private const string Selector = "ApiKeyOrBearer";

    public static IServiceCollection AddLoyaltyAuth(this IServiceCollection services)
    {
        services.AddOptions<AuthOptions>().BindConfiguration(AuthOptions.Section);
        services.AddSingleton<ApiKeyCache>();
        services.AddAuthentication(Selector)
            .AddPolicyScheme(Selector, Selector, o =>
                o.ForwardDefaultSelector = ctx => ctx.Request.Headers.ContainsKey(ApiKeys.Header)
                    ? ApiKeys.Scheme
                    : JwtBearerDefaults.AuthenticationScheme)
            .AddScheme<AuthenticationSchemeOptions, ApiKeyAuthenticationHandler>(ApiKeys.Scheme, null)
            .AddJwtBearer();
        // Configured from options (not at registration) so hosts and tests can supply the settings late.
        services.AddOptions<JwtBearerOptions>(JwtBearerDefaults.AuthenticationScheme)
            .Configure<IOptions<AuthOptions>>((o, auth) =>
            {
                var jwt = auth.Value.Jwt;
                o.MapInboundClaims = false;
                if (!string.IsNullOrWhiteSpace(jwt.Authority))
                {
                    o.Authority = jwt.Authority;
                    o.Audience = jwt.Audience;
                    return;
                }
                var key = jwt.SigningKey;
                if (string.IsNullOrEmpty(key) || Encoding.UTF8.GetByteCount(key) < 32)
                {
                    // Without a configured key of at least 256 bits no member token can be valid.
                    key = Convert.ToBase64String(RandomNumberGenerator.GetBytes(48));
                }
                o.TokenValidationParameters = new TokenValidationParameters
                {
                    ValidIssuer = jwt.Issuer,
                    ValidAudience = jwt.Audience,
                    IssuerSigningKey = new SymmetricSecurityKey(Encoding.UTF8.GetBytes(key)),
                    ValidateIssuerSigningKey = true,
                    ClockSkew = TimeSpan.FromMinutes(1),
                };
            });

        services.AddAuthorizationBuilder()
            .AddPolicy(Policies.Admin, p => p.AddAuthenticationSchemes(ApiKeys.Scheme).RequireRole(Roles.Admin))
            .AddPolicy(Policies.PosOrAdmin, p => p.AddAuthenticationSchemes(ApiKeys.Scheme).RequireRole(Roles.Pos, Roles.Admin))
            .AddPolicy(Policies.AnyApiClient, p => p.AddAuthenticationSchemes(ApiKeys.Scheme).RequireRole(Roles.All))
            .AddPolicy(Policies.Member, p => p.AddAuthenticationSchemes(JwtBearerDefaults.AuthenticationScheme)
                .RequireAuthenticatedUser()
                .RequireAssertion(ctx => long.TryParse(ctx.User.FindFirstValue("sub"), out _)));
        return services;
    }
}
