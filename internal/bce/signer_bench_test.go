package bce

import (
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	sdkauth "github.com/baidubce/bce-sdk-go/auth"
	sdkhttp "github.com/baidubce/bce-sdk-go/http"
)

// The two benchmarks sign the same stop request, with the timestamp moving
// on every 1000 signatures as a busy worker's clock would.

func BenchmarkSignOurs(b *testing.B) {
	s := NewSigner(Credentials{AccessKeyID: "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", SecretAccessKey: "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb"}, 0)
	req, _ := http.NewRequest(http.MethodPut, "https://bcc.bj.baidubce.com/v2/instance/i-YufwpQAe?stop", strings.NewReader(`{"forceStop":false}`))
	req.Header.Set("Content-Type", "application/json")
	base := time.Unix(1700000000, 0)
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		s.Sign(req, base.Add(time.Duration(i/1000)*time.Second))
	}
}

func BenchmarkSignOfficialSDK(b *testing.B) {
	creds, _ := sdkauth.NewBceCredentials("aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb")
	signer := &sdkauth.BceV1Signer{}
	req := &sdkhttp.Request{}
	req.SetMethod(http.MethodPut)
	req.SetUri("/v2/instance/i-YufwpQAe")
	req.SetHost("bcc.bj.baidubce.com")
	req.SetHeader("Host", "bcc.bj.baidubce.com")
	req.SetParam("stop", "")
	req.SetHeader("Content-Type", "application/json")
	req.SetHeader("Content-Length", strconv.Itoa(len(`{"forceStop":false}`)))
	base := int64(1700000000)
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		req.SetHeader("x-bce-date", time.Unix(base+int64(i/1000), 0).UTC().Format(timestampLayout))
		signer.Sign(req, creds, &sdkauth.SignOptions{HeadersToSign: sdkauth.DEFAULT_HEADERS_TO_SIGN, Timestamp: base + int64(i/1000), ExpireSeconds: 1800})
	}
}
