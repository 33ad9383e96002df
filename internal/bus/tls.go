package bus

import (
	"crypto/x509"
	"fmt"
	"os"
)

// LoadCAFile reads a PEM bundle of CA certificates (--ca-file) into a pool.
// It fails when the file cannot be read or holds no certificate. Both
// transports use it, so a private CA works the same for mqtts:// and https://.
func LoadCAFile(path string) (*x509.CertPool, error) {
	pem, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("--ca-file: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("--ca-file %q holds no PEM certificate", path)
	}
	return pool, nil
}
