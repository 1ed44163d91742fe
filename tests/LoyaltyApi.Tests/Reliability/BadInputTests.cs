using System.Globalization;
using System.Net.Http.Headers;
using System.Net.Http.Json;
using System.Text;
using System.Text.Encodings.Web;
using System.Text.Json;
using System.Text.Json.Nodes;
using LoyaltyApi.Tests.Infrastructure;
using Xunit;

namespace LoyaltyApi.Tests.Reliability;

/// <summary>
/// Bad input generated from the OpenAPI document: every documented request body is mutated property by
/// property (wrong JSON types, missing, unknown, huge, odd Unicode, overlong arrays), sent malformed,
/// oversized and with wrong content types; path and query parameters get out-of-range and non-numeric
/// values. Every such request must be answered without a 5xx; a 4xx must be an RFC 9457 problem with
/// <c>status</c>, <c>title</c> and <c>code</c>; and a refused request must not write a row. A 2xx is a
/// failure unless the mutation is on the short list of accepted cases below, each with its reason.
/// Failures are collected and reported together, each with the seed and the exact request.
/// </summary>
public abstract class BadInputTests(ApiFixture fx) : ApiTests(fx)
{
    private const int HugeStringLength = 100_000;
    private const int LongArrayLength = 10_000;
    private const int OversizedBodyBytes = 1024 * 1024;

    // ---- The only mutations the service may accept (2xx), and why. Everything else must be refused. ----

    /// <summary>Free-text properties: emoji and right-to-left letters are legitimate text there (never NUL or a lone surrogate).</summary>
    private static readonly HashSet<string> FreeTextProperties = new(StringComparer.Ordinal)
    {
        "name", "reason", "sku", "category", "receiptNumber", "refundNumber", "externalId", "code",
    };

    /// <summary>Addresses that may be internationalised (RFC 6531): emoji and right-to-left letters may be accepted there too.</summary>
    private static readonly HashSet<string> InternationalisedProperties = new(StringComparer.Ordinal) { "email" };

    /// <summary>Non-nullable properties that may be left out, by "operationId property".</summary>
    private static readonly Dictionary<string, string> AcceptedWhenMissing = new(StringComparer.Ordinal)
    {
        ["RecordPurchase pointsToRedeem"] = "described as '0 for none': leaving it out redeems nothing, exactly what 0 asks",
        ["QuotePurchase pointsToRedeem"] = "described as '0 for none': leaving it out redeems nothing, exactly what 0 asks",
    };

    /// <summary>Query parameters where any value is a legitimate (read-only) request, by "operationId parameter".</summary>
    private static readonly Dictionary<string, string> AcceptedQueryValues = new(StringComparer.Ordinal)
    {
        ["FindMembers externalId"] = "externalId is the brand's free-text customer id: any value is a lookup that finds nobody",
    };

    private const string NullableMissingReason = "nullable in the schema and described as optional: leaving it out means null";
    private const string AllNullableEmptyObjectReason = "every property is nullable and optional: {} asks for all the defaults";
    private const string NoRequiredQueryReason = "no query parameter is required: the documented defaults apply";

    private static readonly (string Label, string Raw)[] HugeNumbers =
    [
        ("1e300", "1e300"),
        ("-1e300", "-1e300"),
        ("2^63", "9223372036854775808"),
        ("-2^63-1", "-9223372036854775809"),
    ];

    private static readonly (string Label, string Value)[] PathValues =
    [
        ("zero", "0"),
        ("negative", "-1"),
        ("max long (no such id)", "9223372036854775807"),
        ("2^63", "9223372036854775808"),
        ("-2^63-1", "-9223372036854775809"),
        ("26 digits", "99999999999999999999999999"),
        ("non-numeric", "abc"),
        ("fraction", "1.5"),
        ("exponent", "1e3"),
        ("emoji", "\U0001F389"),
        ("4000 digits", new string('7', 4000)),
    ];

    private static readonly (string Label, string Value)[] QueryValues =
    [
        ("-1", "-1"),
        ("0", "0"),
        ("101, one past the page-size limit", "101"),
        ("1000000", "1000000"),
        ("2^31", "2147483648"),
        ("2^63", "9223372036854775808"),
        ("1e300", "1e300"),
        ("1.5", "1.5"),
        ("garbage", "garbage"),
        ("NUL", "\0"),
        ("emoji", "\U0001F389"),
        ("4000 chars", new string('x', 4000)),
        ("base64 le:0", Convert.ToBase64String(Encoding.ASCII.GetBytes("le:0"))),
        ("base64 le:-1", Convert.ToBase64String(Encoding.ASCII.GetBytes("le:-1"))),
        ("base64 le:2^70", Convert.ToBase64String(Encoding.ASCII.GetBytes("le:1180591620717411303424"))),
        ("base64 xx:5", Convert.ToBase64String(Encoding.ASCII.GetBytes("xx:5"))),
    ];

    [Fact]
    public async Task EveryDocumentedOperationHasAValidRequestThatTheServiceAccepts()
    {
        var api = await DocumentedApi.LoadAsync(Fx.Anonymous);
        var requests = new ValidRequests(Fx);
        var runner = new ProbeRunner(Fx, FuzzSeed.Value);

        Assert.NotEmpty(api.Operations);
        Assert.Empty(api.Operations.Where(o => !requests.Covers(o.OperationId)).Select(o => $"no valid request for {o}"));
        Assert.Empty(requests.OperationIds.Where(id => api.Operations.All(o => o.OperationId != id)).Select(id => $"stale entry {id}"));
        Assert.Empty(api.Operations.Where(o => o.HasRequestBody && o.BodySchema is null).Select(o => $"{o} has a body that is not application/json"));
        Assert.Empty(api.Operations.SelectMany(o => o.Parameters.Where(p => p.In is not ("path" or "query" or "header")).Select(p => $"{o}: {p.In} parameter {p.Name} is not mutated")));

        var gaps = new List<string>();
        foreach (var op in api.Operations)
        {
            var request = await requests.CreateAsync(op);
            if (op.BodySchema is { } schema)
            {
                if (request.Parts.Body is not { } body) { gaps.Add($"{op}: no body"); continue; }
                gaps.AddRange(api.FieldsOf(schema).Where(f => !JsonText.Has(body, f.Path)).Select(f => $"{op}: the valid body lacks {f.Display}"));
            }
            await runner.RunAsync(requests.ClientFor(request), request.Probe("control", "the valid request"), Expect.Success);
        }
        await RestoreProgramAsync();

        Assert.Empty(gaps);
        runner.AssertClean("valid requests");
    }

    [Fact]
    public async Task SchemaDerivedMutationsOfEveryRequestBodyAreRefusedWithProblemsAndWriteNothing()
    {
        var api = await DocumentedApi.LoadAsync(Fx.Anonymous);
        var requests = new ValidRequests(Fx);
        var runner = new ProbeRunner(Fx, FuzzSeed.Value);
        var bodies = api.Operations.Where(o => o.BodySchema is not null).ToList();
        Assert.NotEmpty(bodies);

        foreach (var op in bodies)
        {
            var rng = FuzzSeed.For(op.OperationId);
            var mutations = api.FieldsOf(op.BodySchema!).SelectMany(f => FieldMutations(op, f, rng)).ToList();
            mutations.Add(BodyMutation(op, "unknown-property", "at the root", r => JsonText.Utf8(JsonText.WithProperty(r.Parts.Body!, [], "unexpectedProperty", "1")), Expect.Refusal));
            await MutateAsync(runner, requests, op, mutations);
        }

        runner.AssertClean($"schema-derived body mutations of {bodies.Count} operations");
    }

    [Fact]
    public async Task MalformedJsonWrongContentTypesAndOversizedBodiesAreRefusedWithProblems()
    {
        var api = await DocumentedApi.LoadAsync(Fx.Anonymous);
        var requests = new ValidRequests(Fx);
        var runner = new ProbeRunner(Fx, FuzzSeed.Value);
        var bodies = api.Operations.Where(o => o.BodySchema is not null).ToList();

        foreach (var op in bodies)
        {
            await MutateAsync(runner, requests, op, WholeBodyMutations(api, op, FuzzSeed.For(op.OperationId)).ToList());
        }

        runner.AssertClean($"malformed, mistyped and oversized bodies of {bodies.Count} operations");
    }

    [Fact]
    public async Task BadPathQueryAndHeaderParametersAreRefusedWithProblemsAndWriteNothing()
    {
        var api = await DocumentedApi.LoadAsync(Fx.Anonymous);
        var requests = new ValidRequests(Fx);
        var runner = new ProbeRunner(Fx, FuzzSeed.Value);
        var withParameters = api.Operations.Where(o => o.Parameters.Count > 0).ToList();
        Assert.Contains(withParameters, o => o.Parameters.Any(p => p.In == "path"));
        Assert.Contains(withParameters, o => o.Parameters.Any(p => p.In == "query"));
        // The operations that honour Idempotency-Key document it; at least these, as of this writing.
        Assert.Empty(new[] { "RecordPurchase", "RecordRefund", "AdjustPoints", "EnrollMember" }
            .Where(id => !withParameters.Any(o => o.OperationId == id && o.Parameters.Any(p => p.In == "header" && p.Name == "Idempotency-Key")))
            .Select(id => $"{id} does not document Idempotency-Key"));

        foreach (var op in withParameters)
        {
            await MutateAsync(runner, requests, op, ParameterMutations(op).ToList());
        }

        runner.AssertClean($"path, query and header parameters of {withParameters.Count} operations");
    }

    // ---- Mutations ----

    private static IEnumerable<Mutation> FieldMutations(DocumentedOperation op, SchemaField f, Random rng)
    {
        foreach (var (label, raw) in WrongTypes(f))
        {
            yield return SetField(op, f, "wrong-type", label, _ => raw, Expect.Refusal);
        }

        var missing = f.Nullable ? Expect.Accepting(NullableMissingReason)
            : AcceptedWhenMissing.TryGetValue($"{op.OperationId} {f.Display}", out var why) ? Expect.Accepting(why) : Expect.Refusal;
        yield return BodyMutation(op, "missing", f.Display, r => JsonText.Utf8(JsonText.Without(r.Parts.Body!, f.Path)), missing);

        yield return SetField(op, f, "huge-string", $"{HugeStringLength} x 'x'", _ => JsonText.Quote(new string('x', HugeStringLength)), Expect.Refusal);
        if (f.IsNumeric && f.Types.Contains("string"))
        {
            yield return SetField(op, f, "huge-string", $"{HugeStringLength} digits", _ => JsonText.Quote(new string('9', HugeStringLength)), Expect.Refusal);
        }
        foreach (var (label, raw) in HugeNumbers)
        {
            yield return SetField(op, f, "huge-number", label, _ => raw, Expect.Refusal);
        }
        if (f.Format == "int32")
        {
            yield return SetField(op, f, "huge-number", "2^31", _ => "2147483648", Expect.Refusal);
        }

        var textual = f.Types.Contains("string") && !f.IsEnum;
        var unicodeAccepted = textual && FreeTextProperties.Contains(f.Name) ? "free text: emoji and right-to-left letters are valid text"
            : textual && InternationalisedProperties.Contains(f.Name) ? "an internationalised address (RFC 6531) may hold any Unicode letters"
            : null;
        foreach (var (label, sample, legitimateText) in new[]
                 {
                     ("emoji", "\U0001F389\U0001F44D\U0001F3FD", true),
                     ("right-to-left", "\u0645\u0631\u062D\u0628\u0627 \u05E9\u05DC\u05D5\u05DD", true),
                     ("NUL", "\0", false),
                 })
        {
            var at = rng.NextDouble();
            yield return SetField(op, f, "unicode", $"{label} inserted", body => JsonText.Quote(Insert(JsonText.TextAt(body, f.Path), sample, at)),
                legitimateText && unicodeAccepted is not null ? Expect.Accepting(unicodeAccepted) : Expect.Refusal);
        }
        var surrogateAt = rng.NextDouble();
        yield return SetField(op, f, "unicode", "lone surrogate \\ud800 inserted", body =>
        {
            var text = JsonText.TextAt(body, f.Path);
            var cut = (int)(surrogateAt * text.Length);
            return "\"" + JsonText.Escape(text[..cut]) + "\\ud800" + JsonText.Escape(text[cut..]) + "\"";
        }, Expect.Refusal);

        if (f.Types.Contains("array"))
        {
            yield return SetField(op, f, "long-array", $"{LongArrayLength} copies of the first item", body =>
            {
                var first = JsonText.At(body, f.Path) is JsonArray { Count: > 0 } a ? a[0]?.ToJsonString(JsonText.Wire) ?? "null" : "1";
                return "[" + string.Join(",", Enumerable.Repeat(first, LongArrayLength)) + "]";
            }, Expect.Refusal);
            yield return SetField(op, f, "long-array", $"{LongArrayLength} empty objects", _ => "[" + string.Join(",", Enumerable.Repeat("{}", LongArrayLength)) + "]", Expect.Refusal);
        }
        if (f.Types.Contains("object"))
        {
            yield return BodyMutation(op, "unknown-property", $"inside {f.Display}", r => JsonText.Utf8(JsonText.WithProperty(r.Parts.Body!, f.Path, "unexpectedProperty", "1")), Expect.Refusal);
        }
        if (f.Items is { } items && SchemaField.TypesOf(items).Contains("object"))
        {
            yield return BodyMutation(op, "unknown-property", $"inside {f.Display}[0]", r => JsonText.Utf8(JsonText.WithProperty(r.Parts.Body!, [.. f.Path, 0], "unexpectedProperty", "1")), Expect.Refusal);
        }
    }

    /// <summary>Values whose JSON type (or, for pattern-typed numbers, enums and dates, whose shape) the schema does not allow.</summary>
    private static IEnumerable<(string Label, string Raw)> WrongTypes(SchemaField f)
    {
        if (!f.Types.Contains("boolean")) yield return ("boolean", "true");
        if (!f.Types.Contains("object")) yield return ("object", "{}");
        if (!f.Types.Contains("array")) yield return ("array", "[\"x\"]");
        else
        {
            yield return ("array of a wrong item type", "[true]");
            yield return ("array with a null item", "[null]");
        }
        if (!f.Types.Contains("string")) yield return ("string", "\"wrong-type\"");
        else if (f.HasPattern) yield return ("string that breaks the pattern", "\"wrong-type\"");
        else if (f.IsEnum) yield return ("string outside the enum", "\"NotAMember\"");
        else if (f.Format is "date-time" or "date") yield return ($"string that is not a {f.Format}", "\"not-a-date\"");
        if (!f.IsNumeric) yield return ("number", "1");
        if (f.Types.Contains("integer") && !f.Types.Contains("number")) yield return ("fractional number", "1.5");
        if (!f.Nullable) yield return ("null", "null");
    }

    private static IEnumerable<Mutation> WholeBodyMutations(DocumentedApi api, DocumentedOperation op, Random rng)
    {
        var allNullable = api.FieldsOf(op.BodySchema!).Where(f => f.Path.Count == 1).All(f => f.Nullable);
        var cut = 0.2 + (rng.NextDouble() * 0.6);
        Mutation Malformed(string detail, Func<string, string> text, Expect? expect = null) =>
            BodyMutation(op, "malformed-json", detail, r => Encoding.UTF8.GetBytes(text(r.BodyText)), expect ?? Expect.Refusal);

        yield return Malformed($"truncated at {cut:P0}", t => t[..(int)(t.Length * cut)]);
        yield return Malformed("last character cut", t => t[..^1]);
        yield return Malformed("trailing garbage", t => t + " garbage");
        yield return Malformed("two documents", t => t + t);
        yield return Malformed("empty body", _ => "");
        yield return Malformed("null", _ => "null");
        yield return Malformed("[]", _ => "[]");
        yield return Malformed("{}", _ => "{}", allNullable ? Expect.Accepting(AllNullableEmptyObjectReason) : Expect.Refusal);
        yield return Malformed("a bare string", _ => "\"text\"");
        yield return Malformed("a bare number", _ => "1");
        yield return Malformed("single quotes", t => t.Replace('"', '\''));
        yield return Malformed("a comment", t => "/* comment */" + t);
        yield return Malformed("nested 10000 deep", _ => new string('[', 10_000) + new string(']', 10_000));
        yield return Malformed($"{LongArrayLength} objects at the root", _ => "[" + string.Join(",", Enumerable.Repeat("{}", LongArrayLength)) + "]");
        yield return BodyMutation(op, "malformed-json", "invalid UTF-8 inside a string", r =>
        {
            var bytes = Encoding.UTF8.GetBytes(r.BodyText).ToList();
            var at = r.BodyText.IndexOf(":\"", StringComparison.Ordinal);
            bytes.InsertRange(at < 0 ? 1 : Encoding.UTF8.GetByteCount(r.BodyText[..(at + 2)]), [0xC3, 0x28, 0xFF]);
            return bytes.ToArray();
        }, Expect.Refusal);

        foreach (var contentType in new[] { "text/plain", "application/xml", "application/x-www-form-urlencoded", null })
        {
            yield return BodyMutation(op, "content-type", contentType ?? "missing", r => r.BodyBytes!, Expect.Refusal, contentType: contentType);
        }
        yield return BodyMutation(op, "content-type", "application/xml with an XML body", _ => "<program><currency>USD</currency></program>"u8.ToArray(),
            Expect.Refusal, contentType: "application/xml");

        var padded = api.FieldsOf(op.BodySchema!).FirstOrDefault(f => f.Path.Count == 1 && f.Types.Contains("string") && !f.IsEnum);
        Func<ValidRequest, byte[]> oversized = padded is null
            ? r => JsonText.Utf8(JsonText.WithProperty(r.Parts.Body!, [], "padding", JsonText.Quote(new string('x', OversizedBodyBytes))))
            : r => JsonText.Utf8(JsonText.With(r.Parts.Body!, padded.Path, JsonText.Quote(new string('x', OversizedBodyBytes))));
        yield return BodyMutation(op, "too-large", "1 MB with Content-Length", oversized, Expect.Exactly(413));
        yield return BodyMutation(op, "too-large", "1 MB chunked (no Content-Length)", oversized, Expect.Exactly(413), chunked: true);
    }

    private static IEnumerable<Mutation> ParameterMutations(DocumentedOperation op)
    {
        foreach (var p in op.Parameters.Where(p => p.In == "path"))
        {
            foreach (var (label, value) in PathValues)
            {
                yield return new Mutation(r => r.Probe("path", $"{p.Name} {label}", r.PathWith(p.Name, value)), Expect.Refusal);
            }
        }
        var query = op.Parameters.Where(p => p.In == "query").ToList();
        foreach (var p in query)
        {
            var expect = AcceptedQueryValues.TryGetValue($"{op.OperationId} {p.Name}", out var why) ? Expect.Accepting(why) : Expect.Refusal;
            foreach (var (label, value) in QueryValues)
            {
                yield return new Mutation(r => r.Probe("query", $"{p.Name}={label}", r.PathWithQuery(new Dictionary<string, string> { [p.Name] = value })), expect);
            }
        }
        foreach (var p in op.Parameters.Where(p => p.In == "header"))
        {
            foreach (var (label, value) in HeaderValues(p))
            {
                yield return new Mutation(r => r.Probe("header", $"{p.Name} {label}") with { Headers = new Dictionary<string, string> { [p.Name] = value } },
                    Expect.Exactly(400));
            }
        }
        if (query.Count > 0)
        {
            var expect = query.Any(p => p.Required) ? Expect.Refusal : Expect.Accepting(NoRequiredQueryReason);
            yield return new Mutation(r => r.Probe("query", "no parameters", r.PathWithQuery(new Dictionary<string, string>())), expect);
        }
    }

    /// <summary>
    /// Values outside a header parameter's documented schema: one character too long, far too long, and characters its
    /// pattern excludes. HttpClient drops an empty header value before sending it; the unit tests check that one.
    /// </summary>
    private static IEnumerable<(string Label, string Value)> HeaderValues(DocumentedParameter p)
    {
        if (p.Schema["maxLength"]?.GetValue<int>() is { } max) yield return ($"{max + 1} characters", new string('k', max + 1));
        yield return ($"{HugeStringLength} characters", new string('k', HugeStringLength));
        if (p.Schema["pattern"] is not null)
        {
            yield return ("with a space", "retry 1");
            yield return ("with a tab", "retry\t1");
            yield return ("with a control character", "retry\u00011");
            yield return ("with non-ASCII letters", "ключ-ü-键");
            yield return ("with an emoji", "retry-\U0001F600");
        }
    }

    private static Mutation SetField(DocumentedOperation op, SchemaField f, string kind, string label, Func<JsonObject, string> raw, Expect expect) =>
        BodyMutation(op, kind, $"{f.Display} = {label}", r => JsonText.Utf8(JsonText.With(r.Parts.Body!, f.Path, raw(r.Parts.Body!))), expect);

    private static Mutation BodyMutation(DocumentedOperation op, string kind, string detail, Func<ValidRequest, byte[]> body, Expect expect,
        string? contentType = "application/json", bool chunked = false) =>
        new(r => r.Probe(kind, detail, r.Path, body(r), contentType, chunked), expect);

    private static string Insert(string text, string sample, double at)
    {
        var index = (int)(at * text.Length);
        // Never split a surrogate pair of the original text.
        if (index > 0 && index < text.Length && char.IsLowSurrogate(text[index])) index--;
        return text[..index] + sample + text[index..];
    }

    /// <summary>Sends each mutation of a valid request; a fresh valid request replaces one that a 2xx used up.</summary>
    private async Task MutateAsync(ProbeRunner runner, ValidRequests requests, DocumentedOperation op, IReadOnlyList<Mutation> mutations)
    {
        var current = await requests.CreateAsync(op);
        foreach (var mutation in mutations)
        {
            var status = await runner.RunAsync(requests.ClientFor(current), mutation.Build(current), mutation.Expect);
            if (status is >= 200 and < 300)
            {
                if (op.OperationId == "PutProgram") await RestoreProgramAsync();
                current = await requests.CreateAsync(op);
            }
        }
    }

    private async Task RestoreProgramAsync() => (await Fx.Admin.PutAsJsonAsync("/v1/program", ApiFixture.DefaultProgram)).EnsureSuccessStatusCode();
}

// ==================================================================================================
// Shared by the reliability suites: the OpenAPI document, valid requests per operation, probes.
// ==================================================================================================

/// <summary>The seed of every pseudo-random choice; set LOYALTY_FUZZ_SEED to replay another run.</summary>
public static class FuzzSeed
{
    public const int Default = 20260302;

    public static int Value { get; } =
        int.TryParse(Environment.GetEnvironmentVariable("LOYALTY_FUZZ_SEED"), NumberStyles.Integer, CultureInfo.InvariantCulture, out var seed) ? seed : Default;

    /// <summary>A generator per operation (stable across processes), so one operation's probes replay on their own.</summary>
    public static Random For(string operationId)
    {
        var hash = 2166136261u;
        foreach (var c in operationId) hash = (hash ^ c) * 16777619u;
        return new Random(unchecked(Value * 31 + (int)hash));
    }
}

public sealed record DocumentedParameter(string Name, string In, bool Required, JsonObject Schema);

public sealed record DocumentedOperation(string Method, string PathTemplate, string OperationId, IReadOnlyList<DocumentedParameter> Parameters,
    bool HasRequestBody, JsonObject? BodySchema)
{
    public override string ToString() => $"{Method} {PathTemplate} ({OperationId})";
}

/// <summary>A property somewhere in a request schema, with the JSON types the schema allows for it.</summary>
public sealed record SchemaField(string Display, IReadOnlyList<object> Path, string Name, IReadOnlySet<string> Types, bool Nullable, bool IsEnum,
    bool HasPattern, string? Format, JsonObject? Items)
{
    public bool IsNumeric => Types.Contains("integer") || Types.Contains("number");

    public static HashSet<string> TypesOf(JsonObject schema)
    {
        var types = new HashSet<string>(StringComparer.Ordinal);
        switch (schema["type"])
        {
            case JsonArray many:
                foreach (var t in many) types.Add(t!.GetValue<string>());
                break;
            case JsonValue one:
                types.Add(one.GetValue<string>());
                break;
        }
        if (types.Count == 0 && schema["enum"] is JsonArray values)
        {
            foreach (var v in values)
            {
                types.Add(v?.GetValueKind() switch
                {
                    JsonValueKind.String => "string",
                    JsonValueKind.Number => "number",
                    null or JsonValueKind.Null => "null",
                    _ => "object",
                });
            }
        }
        if (types.Count == 0 && schema["properties"] is not null) types.Add("object");
        if (types.Count == 0 && schema["items"] is not null) types.Add("array");
        return types;
    }
}

/// <summary>The service's own OpenAPI document, as the suites walk it.</summary>
public sealed class DocumentedApi
{
    private static readonly string[] Methods = ["get", "put", "post", "delete", "patch", "head", "options", "trace"];

    private DocumentedApi(JsonObject root)
    {
        Root = root;
        var operations = new List<DocumentedOperation>();
        foreach (var (path, itemNode) in root["paths"]!.AsObject())
        {
            var item = itemNode!.AsObject();
            var shared = item["parameters"] as JsonArray;
            foreach (var (method, opNode) in item)
            {
                if (!Methods.Contains(method)) continue;
                var op = opNode!.AsObject();
                var parameters = (shared ?? new JsonArray()).Concat(op["parameters"] as JsonArray ?? new JsonArray()).Select(p => Resolve(p)).Select(p => new DocumentedParameter(
                    p["name"]!.GetValue<string>(), p["in"]!.GetValue<string>(), p["required"]?.GetValue<bool>() ?? false,
                    p["schema"] is { } s ? Resolve(s) : new JsonObject())).ToList();
                JsonObject? bodySchema = null;
                var requestBody = op["requestBody"] is { } rb ? Resolve(rb) : null;
                if (requestBody?["content"]?["application/json"]?["schema"] is { } schema) bodySchema = Resolve(schema);
                operations.Add(new DocumentedOperation(method.ToUpperInvariant(), path, op["operationId"]?.GetValue<string>() ?? $"{method} {path}",
                    parameters, requestBody is not null, bodySchema));
            }
        }
        Operations = operations;
    }

    public JsonObject Root { get; }
    public IReadOnlyList<DocumentedOperation> Operations { get; }

    public static async Task<DocumentedApi> LoadAsync(HttpClient anonymous)
    {
        var response = await anonymous.GetAsync("/openapi/v1.json");
        var text = await response.Content.ReadAsStringAsync();
        Assert.True(response.IsSuccessStatusCode, $"GET /openapi/v1.json answered {(int)response.StatusCode}: {text}");
        return new DocumentedApi(JsonNode.Parse(text)!.AsObject());
    }

    /// <summary>Follows <c>$ref</c>s (within the document) to the schema or object they name.</summary>
    public JsonObject Resolve(JsonNode? node)
    {
        var current = node?.AsObject() ?? throw new InvalidOperationException("missing schema");
        for (var depth = 0; current["$ref"] is JsonValue reference; depth++)
        {
            if (depth > 32) throw new InvalidOperationException("$ref cycle");
            JsonNode? target = Root;
            foreach (var part in reference.GetValue<string>().TrimStart('#').Split('/', StringSplitOptions.RemoveEmptyEntries))
            {
                target = target?[part.Replace("~1", "/", StringComparison.Ordinal).Replace("~0", "~", StringComparison.Ordinal)];
            }
            current = target?.AsObject() ?? throw new InvalidOperationException($"unresolvable {reference}");
        }
        return current;
    }

    /// <summary>Every property of a request schema, depth first, walking into objects and the first item of arrays of objects.</summary>
    public IReadOnlyList<SchemaField> FieldsOf(JsonObject schema)
    {
        var fields = new List<SchemaField>();
        Walk(schema, [], "", fields, 0);
        return fields;
    }

    private void Walk(JsonObject schema, IReadOnlyList<object> path, string display, List<SchemaField> into, int depth)
    {
        if (depth > 6 || schema["properties"] is not JsonObject properties) return;
        foreach (var (name, node) in properties)
        {
            var s = Resolve(node);
            var types = SchemaField.TypesOf(s);
            if ((s["oneOf"] ?? s["anyOf"]) is JsonArray alternatives)
            {
                var resolved = alternatives.Select(Resolve).ToList();
                foreach (var alternative in resolved) types.UnionWith(SchemaField.TypesOf(alternative));
                s = resolved.FirstOrDefault(a => !SchemaField.TypesOf(a).SetEquals(["null"])) ?? s;
            }
            var fieldPath = path.Append(name).ToList();
            var fieldDisplay = display.Length == 0 ? name : $"{display}.{name}";
            var items = types.Contains("array") && s["items"] is { } i ? Resolve(i) : null;
            into.Add(new SchemaField(fieldDisplay, fieldPath, name, types, types.Contains("null") || s["nullable"]?.GetValue<bool>() == true,
                s["enum"] is JsonArray, s["pattern"] is not null, s["format"]?.GetValue<string>(), items));
            if (types.Contains("object")) Walk(s, fieldPath, fieldDisplay, into, depth + 1);
            if (items is not null && SchemaField.TypesOf(items).Contains("object")) Walk(items, fieldPath.Append(0).ToList(), fieldDisplay + "[0]", into, depth + 1);
        }
    }
}

public sealed record RequestParts(IReadOnlyDictionary<string, string> PathValues, IReadOnlyDictionary<string, string> Query, JsonObject? Body, long? MemberId = null);

/// <summary>One valid request for an operation: path values, query and body that the service accepts from its rightful caller.</summary>
public sealed record ValidRequest(DocumentedOperation Operation, RequestParts Parts)
{
    public string Path => Build(Parts.PathValues, Parts.Query);
    public string BodyText => Parts.Body?.ToJsonString(JsonText.Wire) ?? "";
    public byte[]? BodyBytes => Parts.Body is null ? null : Encoding.UTF8.GetBytes(BodyText);

    public string PathWith(string parameter, string value) =>
        Build(new Dictionary<string, string>(Parts.PathValues) { [parameter] = value }, Parts.Query);

    public string PathWithQuery(IReadOnlyDictionary<string, string> query) => Build(Parts.PathValues, query);

    /// <summary>This request (or a variant of its path or body) as a probe; the valid body unless another is given.</summary>
    public Probe Probe(string kind, string detail, string? path = null, byte[]? body = null, string? contentType = "application/json", bool chunked = false) =>
        new(Operation.OperationId, kind, detail, Operation.Method, path ?? Path, body ?? BodyBytes, contentType, chunked);

    private string Build(IReadOnlyDictionary<string, string> pathValues, IReadOnlyDictionary<string, string> query)
    {
        var path = Operation.PathTemplate;
        foreach (var (name, value) in pathValues) path = path.Replace("{" + name + "}", Uri.EscapeDataString(value), StringComparison.Ordinal);
        if (path.Contains('{', StringComparison.Ordinal)) throw new InvalidOperationException($"no value for a path parameter of {Operation}");
        return query.Count == 0 ? path : path + "?" + string.Join("&", query.Select(q => $"{Uri.EscapeDataString(q.Key)}={Uri.EscapeDataString(q.Value)}"));
    }
}

/// <summary>
/// A valid request per operationId, made from the fixture's seeded data: every resource named belongs to
/// the Brand (merchant <see cref="ApiFixture.BrandId"/>, store <see cref="ApiFixture.BrandStoreId"/>, purchases
/// recorded there), every body carries every documented property, and every call creates what it needs
/// (a member, a card, a purchase), so a request can be used up by a 2xx and replaced.
/// </summary>
public sealed class ValidRequests
{
    private readonly ApiFixture _fx;
    private readonly Dictionary<string, Func<Task<RequestParts>>> _factories;
    private readonly Dictionary<long, HttpClient> _members = [];
    private string? _referralCode;

    public ValidRequests(ApiFixture fx)
    {
        _fx = fx;
        var brand = Id(fx.BrandId);
        _factories = new(StringComparer.Ordinal)
        {
            ["GetProgram"] = () => Parts(),
            ["PutProgram"] = () => Parts(body: JsonSerializer.SerializeToNode(ApiFixture.DefaultProgram)!.AsObject()),
            ["CreateMerchant"] = () => Parts(body: new JsonObject { ["name"] = fx.Unique("Fuzz Merchant "), ["kind"] = "Partner" }),
            ["ListMerchants"] = () => Parts(query: new() { ["limit"] = "5" }),
            ["GetMerchant"] = () => Parts(path: new() { ["id"] = brand }),
            ["CreateStore"] = () => Parts(path: new() { ["id"] = brand }, body: new JsonObject { ["code"] = fx.Unique("FZ"), ["name"] = "Fuzz Store" }),
            ["ListStores"] = () => Parts(path: new() { ["id"] = brand }, query: new() { ["limit"] = "5" }),
            ["CreateApiClient"] = () => Parts(body: new JsonObject
            {
                ["name"] = fx.Unique("fuzz till "), ["role"] = "pos", ["merchantId"] = fx.BrandId, ["storeId"] = fx.BrandStoreId,
            }),
            ["ListApiClients"] = () => Parts(query: new() { ["limit"] = "5" }),
            ["RevokeApiClient"] = async () =>
            {
                var created = await ReadCreatedAsync(await fx.Admin.PostAsJsonAsync("/v1/api-clients", new { name = fx.Unique("to revoke "), role = "analyst" }));
                return P(path: new() { ["id"] = Id(created.GetProperty("id").GetInt64()) });
            },
            ["EnrollMember"] = async () => P(body: new JsonObject
            {
                ["externalId"] = fx.Unique("EXT-"),
                ["phone"] = fx.UniquePhone(),
                ["email"] = fx.Unique("fuzz") + "@example.org",
                ["name"] = "Fuzz Member",
                ["birthDate"] = "1990-05-17",
                ["referralCode"] = await ReferralCodeAsync(),
                ["cardNumber"] = fx.Unique("C9100"),
            }),
            ["FindMembers"] = async () =>
            {
                var (member, _) = await fx.EnrollAsync();
                var phone = await fx.ScalarAsync<string>("SELECT phone FROM members WHERE id = @member", new { member });
                return P(query: new() { ["phone"] = phone });
            },
            ["GetMember"] = async () => P(path: new() { ["id"] = Id((await fx.EnrollAsync()).MemberId) }),
            ["IssueCard"] = async () => P(path: new() { ["id"] = Id((await fx.EnrollAsync()).MemberId) }, body: new JsonObject { ["cardNumber"] = fx.Unique("C9200") }),
            ["LookupCard"] = async () => P(path: new() { ["cardNumber"] = (await fx.EnrollAsync()).Card }),
            ["BlockCard"] = async () => P(path: new() { ["cardNumber"] = (await fx.EnrollAsync()).Card }, body: new JsonObject { ["reason"] = "lost at the till" }),
            ["ReplaceCard"] = async () => P(path: new() { ["cardNumber"] = (await fx.EnrollAsync()).Card },
                body: new JsonObject { ["newCardNumber"] = fx.Unique("C9300"), ["reason"] = "lost" }),
            ["QuotePurchase"] = async () => P(body: PurchaseBody((await fx.EnrollAsync()).Card)),
            ["RecordPurchase"] = async () => P(body: PurchaseBody((await fx.EnrollAsync()).Card)),
            ["GetPurchase"] = async () => P(path: new() { ["id"] = Id(await RecordPurchaseAsync()) }),
            ["RecordRefund"] = async () => P(path: new() { ["id"] = Id(await RecordPurchaseAsync()) }, body: new JsonObject
            {
                ["refundNumber"] = fx.Unique("RF"),
                ["storeId"] = fx.BrandStoreId,
                ["occurredAt"] = fx.Clock.Now,
                ["amount"] = null,
                ["lines"] = new JsonArray(new JsonObject { ["lineNo"] = 1, ["quantity"] = 1 }),
            }),
            ["GetMemberBalance"] = async () => P(path: new() { ["id"] = Id((await fx.EnrollAsync()).MemberId) }),
            ["GetMemberTransactions"] = async () => P(path: new() { ["id"] = Id(await MemberWithHistoryAsync()) }, query: new() { ["limit"] = "5" }),
            ["AdjustPoints"] = async () => P(path: new() { ["id"] = Id((await fx.EnrollAsync()).MemberId) }, body: new JsonObject { ["points"] = 25, ["reason"] = "goodwill" }),
            ["GetMe"] = async () => P(member: (await fx.EnrollAsync()).MemberId),
            ["GetMyTransactions"] = async () => P(query: new() { ["limit"] = "5" }, member: await MemberWithHistoryAsync()),
            ["RunPointsLifecycle"] = () => Parts(),
            ["PurgeIdempotencyKeys"] = () => Parts(),
            ["GetRuntimeCounters"] = () => Parts(),
        };
    }

    public IReadOnlyCollection<string> OperationIds => _factories.Keys;

    public bool Covers(string operationId) => _factories.ContainsKey(operationId);

    public async Task<ValidRequest> CreateAsync(DocumentedOperation op)
    {
        Assert.True(_factories.TryGetValue(op.OperationId, out var factory), $"no valid request for {op}: add one to {nameof(ValidRequests)}");
        return new ValidRequest(op, await factory());
    }

    /// <summary>The rightful caller: the admin key, or the member's own token for /v1/me.</summary>
    public HttpClient ClientFor(ValidRequest request) => request.Parts.MemberId is { } member ? Member(member) : _fx.Admin;

    public HttpClient Member(long memberId)
    {
        if (!_members.TryGetValue(memberId, out var client)) _members[memberId] = client = _fx.MemberClient(memberId);
        return client;
    }

    /// <summary>A purchase body with every documented property: one line of two units, paid by card, nothing redeemed.</summary>
    public JsonObject PurchaseBody(string card) => new()
    {
        ["storeId"] = _fx.BrandStoreId,
        ["receiptNumber"] = _fx.Unique("RZ"),
        ["cardNumber"] = card,
        ["memberId"] = null,
        ["occurredAt"] = _fx.Clock.Now,
        ["currency"] = ApiFixture.Currency,
        ["total"] = 5.00m,
        ["lines"] = new JsonArray(new JsonObject { ["sku"] = "SKU-1", ["category"] = "food", ["quantity"] = 2, ["amount"] = 5.00m }),
        ["pointsToRedeem"] = 0,
    };

    /// <summary>Records a purchase at the Brand's store for a new member; returns its id.</summary>
    public async Task<long> RecordPurchaseAsync()
    {
        var (_, card) = await _fx.EnrollAsync();
        var created = await ReadCreatedAsync(await _fx.Admin.PostAsync("/v1/purchases", JsonBody(PurchaseBody(card))));
        return created.GetProperty("purchaseId").GetInt64();
    }

    private async Task<long> MemberWithHistoryAsync()
    {
        var (member, _) = await _fx.EnrollAsync();
        for (var i = 1; i <= 3; i++) await _fx.AdjustAsync(member, i * 10);
        return member;
    }

    private async Task<string> ReferralCodeAsync()
    {
        if (_referralCode is null)
        {
            var (member, _) = await _fx.EnrollAsync();
            _referralCode = await _fx.ScalarAsync<string>("SELECT referral_code FROM members WHERE id = @member", new { member });
        }
        return _referralCode;
    }

    public static StringContent JsonBody(JsonNode body) => new(body.ToJsonString(JsonText.Wire), Encoding.UTF8, "application/json");

    private static async Task<JsonElement> ReadCreatedAsync(HttpResponseMessage response)
    {
        var text = await response.Content.ReadAsStringAsync();
        Assert.True(response.StatusCode == System.Net.HttpStatusCode.Created, $"setup request failed with {(int)response.StatusCode}: {text}");
        return JsonDocument.Parse(text).RootElement.Clone();
    }

    private static string Id(long id) => id.ToString(CultureInfo.InvariantCulture);

    private static RequestParts P(Dictionary<string, string>? path = null, Dictionary<string, string>? query = null, JsonObject? body = null, long? member = null) =>
        new(path ?? [], query ?? [], body, member);

    private static Task<RequestParts> Parts(Dictionary<string, string>? path = null, Dictionary<string, string>? query = null, JsonObject? body = null) =>
        Task.FromResult(P(path, query, body));
}

/// <summary>What a probe's answer must be: refused (any 4xx), one of some statuses, or a success (also allowed with a reason).</summary>
public sealed record Expect(int[]? Statuses = null, string? AcceptedBecause = null, bool MustSucceed = false)
{
    public static readonly Expect Refusal = new();
    public static readonly Expect Success = new(MustSucceed: true);
    public static Expect Exactly(params int[] statuses) => new(statuses);
    public static Expect Accepting(string reason) => new(AcceptedBecause: reason);
}

public sealed record Mutation(Func<ValidRequest, Probe> Build, Expect Expect);

/// <summary>One HTTP request of a suite, described well enough to replay it.</summary>
public sealed record Probe(string Operation, string Kind, string Detail, string Method, string Path, byte[]? Body = null,
    string? ContentType = "application/json", bool Chunked = false, IReadOnlyDictionary<string, string>? Headers = null)
{
    public HttpRequestMessage ToRequest()
    {
        var request = new HttpRequestMessage(new HttpMethod(Method), Path);
        if (Body is not null)
        {
            HttpContent content = Chunked ? new StreamContent(new ForwardOnlyStream(Body)) : new ByteArrayContent(Body);
            if (ContentType is not null) content.Headers.ContentType = MediaTypeHeaderValue.Parse(ContentType);
            request.Content = content;
        }
        foreach (var (name, value) in Headers ?? new Dictionary<string, string>()) request.Headers.TryAddWithoutValidation(name, value);
        return request;
    }

    public string Describe(int seed)
    {
        var body = Body is null ? "no body" : $"body[{Body.Length} bytes{(Chunked ? ", chunked" : "")}, {ContentType ?? "no content type"}]={JsonText.Preview(Encoding.UTF8.GetString(Body), 240)}";
        var headers = Headers is { Count: > 0 } ? " headers " + string.Join("; ", Headers.Select(h => $"{h.Key}: {JsonText.Preview(h.Value, 40)}")) : "";
        return $"[seed {seed}] {Operation} {Kind} {Detail}: {Method} {JsonText.Preview(Path, 200)}{headers} {body}";
    }
}

/// <summary>Sends probes, checks each answer and that refused requests wrote nothing, and collects every failure.</summary>
public sealed class ProbeRunner(ApiFixture fx, int seed)
{
    private readonly List<(string Category, string Line)> _failures = [];

    public int Requests { get; private set; }

    public async Task<int> RunAsync(HttpClient client, Probe probe, Expect expect)
    {
        var before = await DataSnapshot.TakeAsync(fx);
        using var request = probe.ToRequest();
        using var response = await client.SendAsync(request);
        var text = await response.Content.ReadAsStringAsync();
        Requests++;
        var after = await DataSnapshot.TakeAsync(fx);

        var status = (int)response.StatusCode;
        var success = status is >= 200 and < 300;
        void Fail(string category, string reason) => _failures.Add((category,
            $"{reason} | {probe.Describe(seed)} -> {status} {response.Content.Headers.ContentType?.MediaType ?? "(no content type)"} {JsonText.Preview(text, 300)}"));

        if (status >= 500) Fail("5xx", "server error");
        else if (expect.MustSucceed) { if (!success) Fail("valid request refused", "the valid request was not accepted"); }
        else if (expect.Statuses is { } allowed) { if (!allowed.Contains(status)) Fail($"expected {string.Join(" or ", allowed)}", $"expected {string.Join(" or ", allowed)}"); }
        else if (success && expect.AcceptedBecause is null) Fail("accepted", "accepted (2xx) a request that must be refused");
        else if (!success && status is < 400 or >= 500) Fail("not 2xx or 4xx", "neither a success nor a 4xx");
        if (status is >= 400 and < 500 && ProblemDefect(response, text) is { } defect) Fail(defect, defect);
        if ((!success || probe.Method == "GET") && DataSnapshot.Diff(before, after) is { } diff) Fail("wrote data", $"wrote data: {diff}");
        return status;
    }

    /// <summary>What an error answer lacks to be an RFC 9457 problem with the API's stable code, or null.</summary>
    public static string? ProblemDefect(HttpResponseMessage response, string text)
    {
        var mediaType = response.Content.Headers.ContentType?.MediaType;
        if (mediaType != "application/problem+json") return $"problem: content type {mediaType ?? "(none)"}";
        try
        {
            using var document = JsonDocument.Parse(text);
            var root = document.RootElement;
            if (root.ValueKind != JsonValueKind.Object) return "problem: body is not a JSON object";
            var lacks = new List<string>();
            if (!root.TryGetProperty("status", out var s) || !s.TryGetInt32(out var n) || n != (int)response.StatusCode) lacks.Add("status");
            if (!root.TryGetProperty("title", out var t) || t.ValueKind != JsonValueKind.String || string.IsNullOrWhiteSpace(t.GetString())) lacks.Add("title");
            if (!root.TryGetProperty("code", out var c) || c.ValueKind != JsonValueKind.String || string.IsNullOrWhiteSpace(c.GetString())) lacks.Add("code");
            return lacks.Count == 0 ? null : $"problem lacks {string.Join(", ", lacks)}";
        }
        catch (JsonException)
        {
            return "problem: body is not JSON";
        }
    }

    public void AssertClean(string what)
    {
        if (_failures.Count == 0) return;
        var summary = string.Join("\n", _failures.GroupBy(f => f.Category).Select(g => $"  {g.Count(),5} x {g.Key}"));
        var lines = string.Join("\n", _failures.Take(400).Select(f => "  - " + f.Line));
        var more = _failures.Count > 400 ? $"\n  ... and {_failures.Count - 400} more" : "";
        Assert.Fail($"{what}: {_failures.Count} failure(s) in {Requests} requests (seed {seed}; replay with LOYALTY_FUZZ_SEED={seed}).\n{summary}\n{lines}{more}");
    }
}

/// <summary>Row counts (and a few sums that updates would move) of every table a request could write.</summary>
public static class DataSnapshot
{
    public static readonly string[] Tables =
    [
        "members", "cards", "purchases", "refunds", "ledger_entries", "point_lots", "merchants", "stores", "api_clients", "idempotency_keys",
        "point_accounts", "refund_lines", "redemption_allocations", "program_settings",
    ];

    private static readonly (string Item, string Sql)[] Sums =
    [
        ("revoked api_clients", "SELECT COUNT(*) FROM api_clients WHERE revoked_at IS NOT NULL"),
        ("cards not active", "SELECT COUNT(*) FROM cards WHERE status <> 'active'"),
        ("purchases.refunded_minor", "SELECT COALESCE(SUM(refunded_minor), 0) FROM purchases"),
        // A refund by lines rewrites its purchase's lines with their refunded quantities.
        ("purchases.lines_json", "SELECT COALESCE(SUM(LENGTH(lines_json)), 0) FROM purchases"),
        ("point_lots.remaining_points", "SELECT COALESCE(SUM(remaining_points), 0) FROM point_lots"),
        ("point_accounts.debt_points", "SELECT COALESCE(SUM(debt_points), 0) FROM point_accounts"),
        ("program rules", """
            SELECT COALESCE(SUM(earn_rate_bps + 7 * point_value_minor + 11 * max_redeem_share_bps + 13 * activation_delay_days
                + 17 * points_lifetime_days + 19 * welcome_bonus_points + 23 * LENGTH(currency || time_zone || expiry_rounding)), 0)
            FROM program_settings
            """),
    ];

    private static readonly string Sql = string.Join("\nUNION ALL\n",
        Tables.Select(t => $"SELECT '{t}' AS item, CAST(COUNT(*) AS BIGINT) AS amount FROM {t}")
            .Concat(Sums.Select(s => $"SELECT '{s.Item}' AS item, CAST(({s.Sql}) AS BIGINT) AS amount")));

    public static async Task<IReadOnlyDictionary<string, long>> TakeAsync(ApiFixture fx) =>
        (await fx.QueryAsync<SnapshotRow>(Sql)).ToDictionary(r => r.Item, r => r.Amount, StringComparer.Ordinal);

    public static string? Diff(IReadOnlyDictionary<string, long> before, IReadOnlyDictionary<string, long> after)
    {
        var changes = before.Where(b => after[b.Key] != b.Value).Select(b => $"{b.Key} {b.Value} -> {after[b.Key]}").ToList();
        return changes.Count == 0 ? null : string.Join(", ", changes);
    }
}

public sealed class SnapshotRow
{
    public string Item { get; set; } = "";
    public long Amount { get; set; }
}

/// <summary>JSON helpers for building mutated bodies, including raw text no serializer would write.</summary>
public static class JsonText
{
    /// <summary>Non-ASCII text goes on the wire as UTF-8 rather than \u escapes (control characters are still escaped).</summary>
    public static readonly JsonSerializerOptions Wire = new() { Encoder = JavaScriptEncoder.UnsafeRelaxedJsonEscaping };

    private const string Placeholder = "__raw_json_value_7f3a9c__";

    public static byte[] Utf8(string text) => Encoding.UTF8.GetBytes(text);

    public static string Quote(string text) => JsonSerializer.Serialize(text, Wire);

    public static string Escape(string text) => Quote(text)[1..^1];

    public static JsonNode? At(JsonObject body, IReadOnlyList<object> path)
    {
        JsonNode? node = body;
        foreach (var step in path)
        {
            node = step switch
            {
                string name when node is JsonObject o => o[name],
                int index when node is JsonArray a && index < a.Count => a[index],
                _ => null,
            };
        }
        return node;
    }

    public static bool Has(JsonObject body, IReadOnlyList<object> path) => Parent(body, path) is { } parent && parent.ContainsKey((string)path[^1]);

    /// <summary>The value at the path as text: a string's content, or the JSON of anything else.</summary>
    public static string TextAt(JsonObject body, IReadOnlyList<object> path) => At(body, path) switch
    {
        JsonValue v when v.GetValueKind() == JsonValueKind.String => JsonSerializer.Deserialize<string>(v.ToJsonString()) ?? "",
        { } other => other.ToJsonString(Wire),
        null => "",
    };

    /// <summary>The body with the value at the path replaced by raw JSON text.</summary>
    public static string With(JsonObject body, IReadOnlyList<object> path, string rawJson)
    {
        var clone = body.DeepClone().AsObject();
        var parent = Parent(clone, path) ?? throw new InvalidOperationException($"the valid body has no {string.Join(".", path)}");
        parent[(string)path[^1]] = Placeholder;
        return Splice(clone, rawJson);
    }

    public static string Without(JsonObject body, IReadOnlyList<object> path)
    {
        var clone = body.DeepClone().AsObject();
        var parent = Parent(clone, path) ?? throw new InvalidOperationException($"the valid body has no {string.Join(".", path)}");
        parent.Remove((string)path[^1]);
        return clone.ToJsonString(Wire);
    }

    /// <summary>The body with one more property inside the object at the path (the root for an empty path).</summary>
    public static string WithProperty(JsonObject body, IReadOnlyList<object> path, string name, string rawJson)
    {
        var clone = body.DeepClone().AsObject();
        var target = (path.Count == 0 ? clone : At(clone, path)) as JsonObject ?? throw new InvalidOperationException($"no object at {string.Join(".", path)}");
        target[name] = Placeholder;
        return Splice(clone, rawJson);
    }

    /// <summary>At most <paramref name="max"/> characters, with control characters and lone surrogates shown as \u escapes.</summary>
    public static string Preview(string text, int max)
    {
        var sb = new StringBuilder();
        var end = Math.Min(text.Length, max);
        for (var i = 0; i < end; i++)
        {
            var c = text[i];
            if (char.IsHighSurrogate(c) && i + 1 < text.Length && char.IsLowSurrogate(text[i + 1]))
            {
                sb.Append(c).Append(text[++i]);
            }
            else if (c < 0x20 || char.IsSurrogate(c))
            {
                sb.Append(CultureInfo.InvariantCulture, $"\\u{(int)c:x4}");
            }
            else
            {
                sb.Append(c);
            }
        }
        if (text.Length > max) sb.Append(CultureInfo.InvariantCulture, $"...({text.Length} chars)");
        return sb.ToString();
    }

    private static JsonObject? Parent(JsonObject body, IReadOnlyList<object> path) =>
        (path.Count == 1 ? body : At(body, path.Take(path.Count - 1).ToList())) as JsonObject;

    private static string Splice(JsonObject body, string rawJson)
    {
        var text = body.ToJsonString(Wire);
        var token = Quote(Placeholder);
        var at = text.IndexOf(token, StringComparison.Ordinal);
        return text[..at] + rawJson + text[(at + token.Length)..];
    }
}

/// <summary>A body without a known length, so the client sends it chunked.</summary>
public sealed class ForwardOnlyStream(byte[] data) : Stream
{
    private readonly MemoryStream _inner = new(data, writable: false);

    public override bool CanRead => true;
    public override bool CanSeek => false;
    public override bool CanWrite => false;
    public override long Length => throw new NotSupportedException();
    public override long Position { get => throw new NotSupportedException(); set => throw new NotSupportedException(); }
    public override void Flush() { }
    public override int Read(byte[] buffer, int offset, int count) => _inner.Read(buffer, offset, count);
    public override long Seek(long offset, SeekOrigin origin) => throw new NotSupportedException();
    public override void SetLength(long value) => throw new NotSupportedException();
    public override void Write(byte[] buffer, int offset, int count) => throw new NotSupportedException();

    protected override void Dispose(bool disposing)
    {
        if (disposing) _inner.Dispose();
        base.Dispose(disposing);
    }
}

public sealed class SqliteBadInputTests(SqliteApiFixture fx) : BadInputTests(fx), IClassFixture<SqliteApiFixture>;

[Collection(PostgresCollection.Name), Trait("Database", "Postgres")]
public sealed class PostgresBadInputTests(PostgresApiFixture fx) : BadInputTests(fx), IClassFixture<PostgresApiFixture>;
