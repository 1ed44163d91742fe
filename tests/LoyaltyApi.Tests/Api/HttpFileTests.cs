using System.Net;
using System.Text;
using System.Text.Json;
using System.Text.RegularExpressions;
using LoyaltyApi.Tests.Infrastructure;
using Xunit;

namespace LoyaltyApi.Tests.Api;

/// <summary>
/// Runs the files in http-requests/ as they are (REST Client syntax: file variables, named requests,
/// {{name.response.body.$.field}}, {{$guid}}, {{$randomInt a b}}) against the service; only the base
/// URL, the admin key and the member token are swapped for the test host's.
/// </summary>
public sealed partial class HttpFileTests(SqliteApiFixture fx) : ApiTests(fx), IClassFixture<SqliteApiFixture>
{
    private static readonly string Folder = FindFolder();

    private static string FindFolder()
    {
        for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir is not null; dir = dir.Parent)
        {
            var candidate = Path.Combine(dir.FullName, "http-requests");
            if (Directory.Exists(candidate)) return candidate;
        }
        throw new DirectoryNotFoundException("http-requests folder not found above " + AppContext.BaseDirectory);
    }

    [GeneratedRegex(@"\{\{(.+?)\}\}")]
    private static partial Regex Placeholder();

    [Fact]
    public void EveryFeatureHasAnHttpFile() =>
        Assert.Superset(new HashSet<string> { "program.http", "merchants.http", "members.http", "purchases.http", "balances.http", "operations.http" },
            Directory.GetFiles(Folder, "*.http").Select(Path.GetFileName).ToHashSet()!);

    [Theory]
    [InlineData("program.http")]
    [InlineData("merchants.http")]
    [InlineData("members.http")]
    [InlineData("purchases.http")]
    [InlineData("balances.http")]
    [InlineData("operations.http")]
    public async Task TheHttpFileRunsAsItIs(string file)
    {
        var overrides = new Dictionary<string, string>
        {
            ["baseUrl"] = "http://localhost",
            ["adminKey"] = ApiFixture.AdminKey,
            ["memberToken"] = ApiFixture.MemberToken(1),
        };
        var variables = new Dictionary<string, string>();
        var responses = new Dictionary<string, JsonElement>();
        var client = Fx.Anonymous;
        var blocks = Regex.Split(await File.ReadAllTextAsync(Path.Combine(Folder, file)), @"^###.*$", RegexOptions.Multiline);
        var ran = 0;

        foreach (var block in blocks)
        {
            string? name = null;
            var expected = new[] { "2" };
            var lines = block.Replace("\r", "").Split('\n').ToList();
            var i = 0;
            string? requestLine = null;
            for (; i < lines.Count; i++)
            {
                var line = lines[i].Trim();
                if (line.Length == 0) continue;
                if (line.StartsWith('@'))
                {
                    var eq = line.IndexOf('=');
                    var key = line[1..eq].Trim();
                    variables[key] = overrides.GetValueOrDefault(key, line[(eq + 1)..].Trim());
                    continue;
                }
                if (line.StartsWith('#') || line.StartsWith("//"))
                {
                    var m = Regex.Match(line, @"@name\s+(\w+)");
                    if (m.Success) name = m.Groups[1].Value;
                    var e = Regex.Match(line, @"expect:\s*([\d,]+)");
                    if (e.Success) expected = e.Groups[1].Value.Split(',');
                    continue;
                }
                requestLine = line;
                i++;
                break;
            }
            if (requestLine is null) continue;

            string Expand(string text) => Placeholder().Replace(text, m => Resolve(m.Groups[1].Value.Trim(), variables, responses));
            var parts = Expand(requestLine).Split(' ', StringSplitOptions.RemoveEmptyEntries);
            var request = new HttpRequestMessage(new HttpMethod(parts[0]), parts[1]);
            string? contentType = null;
            for (; i < lines.Count && lines[i].Trim().Length > 0; i++)
            {
                var header = Expand(lines[i]);
                var colon = header.IndexOf(':');
                var (key, value) = (header[..colon].Trim(), header[(colon + 1)..].Trim());
                if (key.Equals("Content-Type", StringComparison.OrdinalIgnoreCase)) contentType = value;
                else request.Headers.TryAddWithoutValidation(key, value);
            }
            var body = Expand(string.Join('\n', lines.Skip(i)).Trim());
            if (body.Length > 0) request.Content = new StringContent(body, Encoding.UTF8, contentType ?? "application/json");

            var response = await client.SendAsync(request);
            var text = await response.Content.ReadAsStringAsync();
            var status = ((int)response.StatusCode).ToString(System.Globalization.CultureInfo.InvariantCulture);
            Assert.True(expected.Any(e => status.StartsWith(e, StringComparison.Ordinal)),
                $"{file}: {parts[0]} {parts[1]} answered {status}, expected {string.Join(" or ", expected)}: {text}");
            if (name is not null) responses[name] = JsonDocument.Parse(text).RootElement.Clone();
            ran++;
        }
        Assert.True(ran >= 3, $"{file} has only {ran} requests");
    }

    private static string Resolve(string expression, Dictionary<string, string> variables, Dictionary<string, JsonElement> responses)
    {
        if (expression == "$guid") return Guid.NewGuid().ToString();
        if (expression.StartsWith("$randomInt", StringComparison.Ordinal))
        {
            var bounds = expression.Split(' ', StringSplitOptions.RemoveEmptyEntries);
            return Random.Shared.Next(int.Parse(bounds[1]), int.Parse(bounds[2])).ToString(System.Globalization.CultureInfo.InvariantCulture);
        }
        if (variables.TryGetValue(expression, out var value)) return value;
        var m = Regex.Match(expression, @"^(\w+)\.response\.body\.\$\.(.+)$");
        Assert.True(m.Success, $"unknown variable {{{{{expression}}}}}");
        var element = responses[m.Groups[1].Value];
        foreach (var segment in m.Groups[2].Value.Split('.')) element = element.GetProperty(segment);
        return element.ValueKind == JsonValueKind.String ? element.GetString()! : element.GetRawText();
    }
}
