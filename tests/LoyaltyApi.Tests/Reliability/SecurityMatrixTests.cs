using System.Net;
using System.Net.Http.Json;
using System.Text.Json;
using System.Text.Json.Nodes;
using System.Text.RegularExpressions;
using LoyaltyApi.Infrastructure;
using LoyaltyApi.Tests.Infrastructure;
using Microsoft.AspNetCore.Authorization;
using Microsoft.AspNetCore.Routing;
using Microsoft.Extensions.DependencyInjection;
using Xunit;

namespace LoyaltyApi.Tests.Reliability;

/// <summary>
/// Every operation of the OpenAPI document against every kind of caller that must be turned away:
/// nobody, a member token outside /v1/me, a non-admin key on admin-only endpoints and a finance or
/// analyst key on till endpoints (both read from the endpoints' own authorization metadata), another merchant's pos key on the Brand's resources. Each
/// refusal must be a problem and write nothing, and each operation is then called by its rightful
/// caller to show the refusal was about the credential. Counts prove no operation was skipped.
/// </summary>
public abstract partial class SecurityMatrixTests(ApiFixture fx) : ApiTests(fx)
{
    /// <summary>Served without credentials, and therefore not part of the document.</summary>
    private static readonly string[] AnonymousOutsideTheDocument = ["/health", "/openapi/v1.json", "/swagger"];

    /// <summary>Admin-only operations as of this writing; the suite checks whatever the metadata says, and at least these.</summary>
    private static readonly string[] KnownAdminOnly =
        ["PutProgram", "CreateMerchant", "CreateStore", "CreateApiClient", "ListApiClients", "RevokeApiClient", "GetMemberTransactions", "AdjustPoints", "RunPointsLifecycle", "PurgeIdempotencyKeys", "GetRuntimeCounters"];

    /// <summary>
    /// Operations a pos key may call that name a Brand merchant, store or purchase, as of this writing; at least these
    /// are checked. Admin-only ones (CreateStore, CreateApiClient) refuse every pos key for its role: the admin-only sweep has them.
    /// </summary>
    private static readonly string[] KnownMerchantScoped =
        ["GetMerchant", "ListStores", "QuotePurchase", "RecordPurchase", "GetPurchase", "RecordRefund"];

    /// <summary>Operations that name a store or a purchase recorded at one; a key scoped to another store of the merchant is refused.</summary>
    private static readonly string[] KnownStoreScoped = ["QuotePurchase", "RecordPurchase", "GetPurchase", "RecordRefund"];

    [Fact]
    public async Task EveryOperationRefusesCallsWithoutCredentials()
    {
        var (api, requests, runner, auth) = await SetUpAsync();
        foreach (var path in AnonymousOutsideTheDocument)
        {
            Assert.DoesNotContain(api.Operations, o => o.PathTemplate.StartsWith(path, StringComparison.Ordinal));
            var response = await Fx.Anonymous.GetAsync(path);
            Assert.True(response.StatusCode == HttpStatusCode.OK, $"GET {path} without credentials answered {(int)response.StatusCode}");
        }
        Assert.Empty(api.Operations.Where(o => auth[o.OperationId].AllowsAnonymous || auth[o.OperationId].Policies.Count == 0).Select(o => $"{o} allows anonymous callers"));

        var member = (await Fx.EnrollAsync()).MemberId;
        var withoutValidCredentials = new (string Label, Dictionary<string, string> Headers)[]
        {
            ("no credentials", []),
            ("an unknown API key", new() { [ApiKeys.Header] = "lk_000000000000_guessedsecretguessedsecretguessed" }),
            ("an empty API key", new() { [ApiKeys.Header] = "" }),
            ("a bearer token that is not a JWT", new() { ["Authorization"] = "Bearer not.a.jwt" }),
            ("a member token signed with another key", new() { ["Authorization"] = "Bearer " + ApiFixture.MemberToken(member, "an-attacker-key-that-is-long-enough-0123456789") }),
        };
        var checkedOperations = 0;
        foreach (var op in api.Operations)
        {
            var request = await requests.CreateAsync(op);
            foreach (var (label, headers) in withoutValidCredentials)
            {
                await runner.RunAsync(Fx.Anonymous, request.Probe("credentials", label) with { Headers = headers }, Expect.Exactly(401));
            }
            await runner.RunAsync(requests.ClientFor(request), request.Probe("control", "rightful caller"), Expect.Success);
            checkedOperations++;
        }
        await RestoreProgramAsync();

        Assert.Equal(api.Operations.Count, checkedOperations);
        runner.AssertClean($"{checkedOperations} operations without valid credentials");
    }

    [Fact]
    public async Task EveryOperationOutsideMeRefusesAMemberToken()
    {
        var (api, requests, runner, auth) = await SetUpAsync();
        var memberOperations = MemberOperations(api, auth);
        var (member, _) = await Fx.EnrollAsync();
        await Fx.AdjustAsync(member, 10);
        var token = requests.Member(member);

        var checkedOperations = 0;
        foreach (var op in api.Operations.Except(memberOperations))
        {
            var request = await requests.CreateAsync(op);
            await runner.RunAsync(token, request.Probe("credentials", "a member token"), Expect.Exactly(401, 403));
            checkedOperations++;
        }

        Assert.Equal(api.Operations.Count - memberOperations.Count, checkedOperations);
        runner.AssertClean($"{checkedOperations} operations outside /v1/me with a member token");
    }

    [Fact]
    public async Task MeOperationsRefuseEveryApiKey()
    {
        var (api, requests, runner, auth) = await SetUpAsync();
        var memberOperations = MemberOperations(api, auth);
        var keys = new (string Label, HttpClient Client)[]
        {
            ("the admin key", Fx.Admin),
            ("a pos key", Fx.BrandPos),
            ("a finance key", Fx.Client(await Fx.CreateKeyAsync(Fx.Unique("finance "), Roles.Finance, null, null))),
        };

        var checkedOperations = 0;
        foreach (var op in memberOperations)
        {
            var request = await requests.CreateAsync(op);
            foreach (var (label, client) in keys)
            {
                await runner.RunAsync(client, request.Probe("credentials", label), Expect.Exactly(401, 403));
            }
            await runner.RunAsync(requests.ClientFor(request), request.Probe("control", "the member's own token"), Expect.Success);
            checkedOperations++;
        }

        Assert.Equal(memberOperations.Count, checkedOperations);
        runner.AssertClean($"{checkedOperations} /v1/me operations with API keys");
    }

    [Fact]
    public async Task EveryAdminOnlyOperationRefusesPosAndOtherNonAdminKeys()
    {
        var (api, requests, runner, auth) = await SetUpAsync();
        var adminOnly = api.Operations.Where(o => auth[o.OperationId].Policies.Contains(Policies.Admin)).ToList();
        Assert.Empty(KnownAdminOnly.Except(adminOnly.Select(o => o.OperationId)).Select(id => $"{id} is no longer admin-only"));
        var keys = new (string Label, HttpClient Client)[]
        {
            ("the brand's pos key", Fx.BrandPos),
            ("a store-scoped pos key", Fx.BrandStorePos),
            ("the partner's pos key", Fx.PartnerPos),
            ("a finance key", Fx.Client(await Fx.CreateKeyAsync(Fx.Unique("finance "), Roles.Finance, null, null))),
            ("an analyst key", Fx.Client(await Fx.CreateKeyAsync(Fx.Unique("analyst "), Roles.Analyst, null, null))),
        };

        await AssertEachKeyRefusedAsync(requests, runner, adminOnly, keys, _ => ("the admin key", Fx.Admin), "admin-only operations with non-admin keys");
        await RestoreProgramAsync();
    }

    /// <summary>Till operations as of this writing; the suite checks whatever the metadata says, and at least these.</summary>
    private static readonly string[] KnownPosOrAdmin =
        ["EnrollMember", "GetMember", "FindMembers", "IssueCard", "LookupCard", "BlockCard", "ReplaceCard", "QuotePurchase", "RecordPurchase", "GetPurchase", "RecordRefund", "GetMemberBalance"];

    [Fact]
    public async Task EveryTillOperationRefusesFinanceAndAnalystKeys()
    {
        var (api, requests, runner, auth) = await SetUpAsync();
        var tillOperations = api.Operations.Where(o => auth[o.OperationId].Policies.Contains(Policies.PosOrAdmin)).ToList();
        Assert.Empty(KnownPosOrAdmin.Except(tillOperations.Select(o => o.OperationId)).Select(id => $"{id} is no longer a till operation"));
        var keys = new (string Label, HttpClient Client)[]
        {
            ("a finance key", Fx.Client(await Fx.CreateKeyAsync(Fx.Unique("finance "), Roles.Finance, null, null))),
            ("an analyst key", Fx.Client(await Fx.CreateKeyAsync(Fx.Unique("analyst "), Roles.Analyst, null, null))),
            ("a finance key of the Brand's merchant", Fx.Client(await Fx.CreateKeyAsync(Fx.Unique("brand finance "), Roles.Finance, Fx.BrandId, null))),
        };

        await AssertEachKeyRefusedAsync(requests, runner, tillOperations, keys, r => ("the rightful caller", requests.ClientFor(r)),
            "till operations with finance and analyst keys");
    }

    [Fact]
    public async Task AnotherMerchantsPosKeyCannotReachTheBrandsMerchantStoresOrPurchases()
    {
        var (api, requests, runner, auth) = await SetUpAsync();
        var scoped = api.Operations.Where(o => !auth[o.OperationId].Policies.Contains(Policies.Admin)
            && (MerchantScopedPath().IsMatch(o.PathTemplate)
                || o.BodySchema?["properties"] is JsonObject p && (p.ContainsKey("merchantId") || p.ContainsKey("storeId")))).ToList();
        Assert.Empty(KnownMerchantScoped.Except(scoped.Select(o => o.OperationId)).Select(id => $"{id} no longer names a merchant, store or purchase"));
        var otherStore = Fx.Client(await Fx.CreateKeyAsync(Fx.Unique("brand store 2 till "), Roles.Pos, Fx.BrandId, Fx.BrandStore2Id));

        var checkedOperations = 0;
        foreach (var op in scoped)
        {
            // Every valid request names the Brand's merchant, its first store or a purchase recorded there.
            var request = await requests.CreateAsync(op);
            await runner.RunAsync(Fx.PartnerPos, request.Probe("credentials", "the partner's pos key on a Brand resource"), Expect.Exactly(403, 404));
            if (KnownStoreScoped.Contains(op.OperationId))
            {
                await runner.RunAsync(otherStore, request.Probe("credentials", "a key of the Brand's other store"), Expect.Exactly(403, 404));
            }
            await runner.RunAsync(Fx.BrandPos, request.Probe("control", "the Brand's own key"), Expect.Success);
            checkedOperations++;
        }

        Assert.Equal(scoped.Count, checkedOperations);
        runner.AssertClean($"{checkedOperations} merchant-scoped operations with another merchant's pos key");
    }

    [Fact]
    public async Task AMemberTokenReadsOnlyItsOwnMemberAndLedgerEvenWhenAnotherMemberHasMore()
    {
        var (alice, aliceCard) = await Fx.EnrollAsync();
        var (bob, bobCard) = await Fx.EnrollAsync();
        await Fx.AdjustAsync(alice, 40, "alice credit");
        await ReadAsync(await Fx.BrandPos.PostAsJsonAsync("/v1/purchases", Fx.PurchaseBody(aliceCard, 12.00m)), HttpStatusCode.Created);
        for (var i = 1; i <= 5; i++)
        {
            await Fx.AdjustAsync(bob, 100 + i, "bob credit");
            await ReadAsync(await Fx.BrandPos.PostAsJsonAsync("/v1/purchases", Fx.PurchaseBody(bobCard, 30.00m, redeem: 10)), HttpStatusCode.Created);
        }
        var alicePhone = await Fx.ScalarAsync<string>("SELECT phone FROM members WHERE id = @alice", new { alice });
        var bobPhone = await Fx.ScalarAsync<string>("SELECT phone FROM members WHERE id = @bob", new { bob });
        var aliceEntries = await Fx.QueryAsync<long>("SELECT id FROM ledger_entries WHERE member_id = @alice ORDER BY id DESC", new { alice });
        Assert.True(aliceEntries.Count >= 2);
        Assert.True(await Fx.ScalarAsync<long>("SELECT COUNT(*) FROM ledger_entries WHERE member_id = @bob", new { bob }) > aliceEntries.Count);
        var aliceBalance = await Fx.BalanceAsync(alice);
        var app = Fx.MemberClient(alice);

        foreach (var path in new[] { "/v1/me", $"/v1/me?memberId={bob}", $"/v1/me?id={bob}&sub={bob}" })
        {
            var response = await app.GetAsync(path);
            var text = await response.Content.ReadAsStringAsync();
            var me = await ReadAsync(response, HttpStatusCode.OK);
            Assert.Equal(alice, me.GetProperty("member").GetProperty("id").GetInt64());
            Assert.Equal(alicePhone, me.GetProperty("member").GetProperty("phone").GetString());
            Assert.Equal(alice, me.GetProperty("balance").GetProperty("memberId").GetInt64());
            Assert.Equal(aliceBalance.GetProperty("available").GetInt64(), me.GetProperty("balance").GetProperty("available").GetInt64());
            Assert.Equal(aliceBalance.GetProperty("pending").GetInt64(), me.GetProperty("balance").GetProperty("pending").GetInt64());
            Assert.DoesNotContain(bobPhone, text, StringComparison.Ordinal);
        }

        // Page through one entry at a time: exactly Alice's entries, newest first, without the staff actor.
        var seen = new List<long>();
        string? cursor = null;
        do
        {
            var page = await ReadAsync(await app.GetAsync("/v1/me/transactions?limit=1" + (cursor is null ? "" : "&cursor=" + Uri.EscapeDataString(cursor))), HttpStatusCode.OK);
            foreach (var item in page.GetProperty("items").EnumerateArray())
            {
                seen.Add(item.GetProperty("id").GetInt64());
                Assert.True(!item.TryGetProperty("actor", out var actor) || actor.ValueKind == JsonValueKind.Null, $"a member sees who made entry {item}");
            }
            cursor = page.TryGetProperty("nextCursor", out var next) && next.ValueKind == JsonValueKind.String ? next.GetString() : null;
        }
        while (cursor is not null && seen.Count <= aliceEntries.Count);
        Assert.Equal(aliceEntries, seen);

        // Naming Bob, or replaying a cursor from Bob's own history, still reads only Alice's ledger.
        var bobsPage = await ReadAsync(await Fx.Admin.GetAsync($"/v1/members/{bob}/transactions?limit=1"), HttpStatusCode.OK);
        var bobsCursor = bobsPage.GetProperty("nextCursor").GetString()!;
        foreach (var path in new[] { $"/v1/me/transactions?memberId={bob}&limit=100", $"/v1/me/transactions?id={bob}&limit=100", $"/v1/me/transactions?limit=100&cursor={Uri.EscapeDataString(bobsCursor)}" })
        {
            var page = await ReadAsync(await app.GetAsync(path), HttpStatusCode.OK);
            var ids = page.GetProperty("items").EnumerateArray().Select(i => i.GetProperty("id").GetInt64()).ToList();
            Assert.NotEmpty(ids);
            Assert.All(ids, id => Assert.Contains(id, aliceEntries));
        }
    }

    [Fact]
    public async Task IssuedApiKeysCannotBeReadBackFromTheApiOrTheDatabase()
    {
        var issued = new List<string> { ApiFixture.AdminKey, Fx.BrandPosKey, KeyOf(Fx.BrandStorePos), KeyOf(Fx.PartnerPos) };
        foreach (var role in Roles.All)
        {
            var pos = role == Roles.Pos;
            issued.Add(await Fx.CreateKeyAsync(Fx.Unique($"{role} key "), role, pos ? Fx.BrandId : null, pos ? Fx.BrandStoreId : null));
        }
        var revoked = await ReadAsync(await Fx.Admin.PostAsJsonAsync("/v1/api-clients", new { name = Fx.Unique("revoked "), role = Roles.Analyst }), HttpStatusCode.Created);
        issued.Add(revoked.GetProperty("apiKey").GetString()!);
        Assert.Equal(HttpStatusCode.NoContent, (await Fx.Admin.PostAsync($"/v1/api-clients/{revoked.GetProperty("id").GetInt64()}/revoke", null)).StatusCode);

        var listing = await Fx.ReadAllPagesAsync(Fx.Admin, "/v1/api-clients");
        var hashes = await Fx.QueryAsync<string>("SELECT key_hash FROM api_clients");
        Assert.Equal(hashes.Count, listing.Count);
        // Nothing an admin can read shows a key, its hash or its secret part, and the service never logged one.
        var readable = new Dictionary<string, string> { ["/v1/api-clients"] = string.Join("\n", listing.Select(c => c.GetRawText())) };
        foreach (var path in new[] { "/v1/merchants", $"/v1/merchants/{Fx.BrandId}/stores" })
        {
            readable[path] = string.Join("\n", (await Fx.ReadAllPagesAsync(Fx.Admin, path)).Select(i => i.GetRawText()));
        }
        foreach (var path in new[] { "/v1/runtime", "/v1/program" })
        {
            readable[path] = (await ReadAsync(await Fx.Admin.GetAsync(path), HttpStatusCode.OK)).GetRawText();
        }
        readable["the service's log"] = string.Join("\n", Fx.Logs.Lines);
        Assert.True(hashes.Count >= issued.Count - 1, "every issued key (but the bootstrap admin key) has a row");

        foreach (var key in issued)
        {
            Assert.DoesNotContain(key, hashes);
            foreach (var (where, text) in readable)
            {
                Assert.False(text.Contains(key, StringComparison.Ordinal), $"{where} shows an API key");
                Assert.False(text.Contains(ApiKeys.Hash(key), StringComparison.Ordinal), $"{where} shows an API key's hash");
                Assert.False(ApiKeys.PrefixOf(key) is not null && text.Contains(key[16..], StringComparison.Ordinal), $"{where} shows an API key's secret part");
            }
            Assert.Equal(0, await Fx.ScalarAsync<long>("SELECT COUNT(*) FROM api_clients WHERE key_hash = @key OR key_prefix = @key OR name = @key", new { key }));
        }
        Assert.All(hashes, h => Assert.Matches("^[0-9a-f]{64}$", h));
        foreach (var client in listing)
        {
            foreach (var property in client.EnumerateObject())
            {
                var name = property.Name.ToLowerInvariant();
                Assert.False(name.Contains("hash", StringComparison.Ordinal) || name.Contains("secret", StringComparison.Ordinal)
                    || (name.Contains("key", StringComparison.Ordinal) && name != "keyprefix"), $"the listing shows {property}");
            }
            Assert.Equal(12, client.GetProperty("keyPrefix").GetString()!.Length);
        }
    }

    // ---- helpers ----

    /// <summary>
    /// Each operation with each key must be a 403 problem that writes nothing; then its rightful caller must
    /// succeed with the same request, so the refusal was about the key.
    /// </summary>
    private static async Task AssertEachKeyRefusedAsync(ValidRequests requests, ProbeRunner runner, IReadOnlyList<DocumentedOperation> operations,
        (string Label, HttpClient Client)[] keys, Func<ValidRequest, (string Label, HttpClient Client)> rightful, string what)
    {
        var checkedOperations = 0;
        foreach (var op in operations)
        {
            var request = await requests.CreateAsync(op);
            foreach (var (label, client) in keys)
            {
                await runner.RunAsync(client, request.Probe("credentials", label), Expect.Exactly(403));
            }
            var (controlLabel, controlClient) = rightful(request);
            await runner.RunAsync(controlClient, request.Probe("control", controlLabel), Expect.Success);
            checkedOperations++;
        }

        Assert.Equal(operations.Count, checkedOperations);
        runner.AssertClean($"{checkedOperations} {what}");
    }

    private sealed record EndpointAuth(IReadOnlyList<string?> Policies, bool AllowsAnonymous);

    [GeneratedRegex(@"^/v1/(merchants|purchases)/\{id\}")]
    private static partial Regex MerchantScopedPath();

    private async Task<(DocumentedApi Api, ValidRequests Requests, ProbeRunner Runner, Dictionary<string, EndpointAuth> Auth)> SetUpAsync()
    {
        var api = await DocumentedApi.LoadAsync(Fx.Anonymous);
        var auth = AuthByOperation();
        Assert.Empty(api.Operations.Where(o => !auth.ContainsKey(o.OperationId)).Select(o => $"no endpoint named {o.OperationId}"));
        return (api, new ValidRequests(Fx), new ProbeRunner(Fx, FuzzSeed.Value), auth);
    }

    /// <summary>The authorization policies of every named endpoint, as the service itself declared them.</summary>
    private Dictionary<string, EndpointAuth> AuthByOperation()
    {
        var result = new Dictionary<string, EndpointAuth>(StringComparer.Ordinal);
        foreach (var endpoint in Fx.Factory.Services.GetRequiredService<EndpointDataSource>().Endpoints)
        {
            if (endpoint.Metadata.GetMetadata<IEndpointNameMetadata>()?.EndpointName is not { } name) continue;
            result[name] = new EndpointAuth(endpoint.Metadata.GetOrderedMetadata<IAuthorizeData>().Select(a => a.Policy).ToList(),
                endpoint.Metadata.GetMetadata<IAllowAnonymous>() is not null);
        }
        return result;
    }

    private static List<DocumentedOperation> MemberOperations(DocumentedApi api, Dictionary<string, EndpointAuth> auth)
    {
        var byPolicy = api.Operations.Where(o => auth[o.OperationId].Policies.Contains(Policies.Member)).ToList();
        var byPath = api.Operations.Where(o => o.PathTemplate == "/v1/me" || o.PathTemplate.StartsWith("/v1/me/", StringComparison.Ordinal)).ToList();
        Assert.Equal(byPath.Select(o => o.OperationId), byPolicy.Select(o => o.OperationId));
        Assert.NotEmpty(byPolicy);
        return byPolicy;
    }

    private static string KeyOf(HttpClient client) => client.DefaultRequestHeaders.GetValues(ApiKeys.Header).Single();

    private async Task RestoreProgramAsync() => (await Fx.Admin.PutAsJsonAsync("/v1/program", ApiFixture.DefaultProgram)).EnsureSuccessStatusCode();
}

public sealed class SqliteSecurityMatrixTests(SqliteApiFixture fx) : SecurityMatrixTests(fx), IClassFixture<SqliteApiFixture>;

[Collection(PostgresCollection.Name), Trait("Database", "Postgres")]
public sealed class PostgresSecurityMatrixTests(PostgresApiFixture fx) : SecurityMatrixTests(fx), IClassFixture<PostgresApiFixture>;
